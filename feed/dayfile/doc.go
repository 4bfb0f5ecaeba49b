// Package dayfile reads and writes Nasdaq BinaryFILE day files, the format of
// the published TotalView-ITCH 5.0 archives (e.g. 12302019.NASDAQ_ITCH50): a
// plain sequence of records, each a big-endian u16 length followed by that
// many bytes of one ITCH message.
//
// Both directions stream. A Reader fills one large buffer (1 MiB by default)
// with big reads and hands out views into it, so a 10 GB file is read in one
// pass in constant memory and without an allocation per message:
//
//	r := dayfile.NewReader(f)
//	for {
//		msg, err := r.Next() // a view, valid until the next call to Next
//		if err == io.EOF {
//			break
//		}
//		if err != nil {
//			return err // e.g. a truncated final record; errors.Is(err, dayfile.ErrTruncated)
//		}
//		...
//	}
//
// A Writer buffers records and writes them in large chunks; call Flush at
// the end.
package dayfile
