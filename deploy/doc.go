// Package deploy holds what an operator installs next to the binary: the
// systemd unit (feedhandler@.service) and the Prometheus alerting rules
// (alerts.yml, with their promtool tests in alerts_test.yml). Its Go tests
// check them with systemd-analyze and promtool and against the measured
// capability set and the shipped feed file. See docs/OPERATIONS.md.
package deploy
