package proto

//go:generate sh -c "rm -rf bookfb && flatc --go --go-namespace bookfb -o . book.fbs && gofmt -w bookfb"
//go:generate sh -c "rm -rf python/bookfb && flatc --python -o python book.fbs"
