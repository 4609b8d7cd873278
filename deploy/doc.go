// Package deploy holds the files that put mixmaster on a machine: the
// systemd user units and the config that `mixmaster setup` renders and
// writes (templates in user/), the demo projects that `serve --demo` and
// setup start with, and examples to copy by hand: a system-wide unit pair
// for a dedicated user (system/), an nginx reverse proxy with TLS
// (nginx.conf.example) and an rsync daemon module for the mistry client's
// rsync transport (rsyncd.conf.example).
package deploy
