package shell

import (
	"os"
	"strconv"
	"strings"
)

// procStat is what Run and the reaper need from /proc/PID/stat.
type procStat struct {
	pid, ppid, pgrp int
	state           byte // R, S, D, Z, X…
}

// dead reports whether the process has exited and only waits to be reaped.
func (p procStat) dead() bool { return p.state == 'Z' || p.state == 'X' }

// scanProcs calls fn for every process in /proc that it can read. It
// fails only when /proc itself cannot be read.
func scanProcs(fn func(procStat)) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue
		}
		if p, ok := parseStat(pid, string(data)); ok {
			fn(p)
		}
	}
	return nil
}

// parseStat parses "pid (comm) state ppid pgrp ..."; comm may hold spaces
// and ')'.
func parseStat(pid int, s string) (procStat, bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return procStat{}, false
	}
	return procStat{pid: pid, ppid: ppid, pgrp: pgrp, state: f[0][0]}, true
}
