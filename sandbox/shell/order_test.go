package shell_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"mixmaster"
	"mixmaster/artifacts"
	"mixmaster/sandbox/shell"
)

// alternating is a command writing n lines alternately to stdout and
// stderr, and the order they were written in.
func alternating(n int) (command, want string) {
	var b strings.Builder
	for i := range n {
		if i%2 == 0 {
			fmt.Fprintf(&b, "out%d\n", i)
		} else {
			fmt.Fprintf(&b, "err%d\n", i)
		}
	}
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo out$i; echo err$((i+1)) >&2; i=$((i+2)); done`, n), b.String()
}

// Order across stdout and stderr wins over telling them apart: all output
// goes to the stdout writer, as written.
func TestOutputOrder(t *testing.T) {
	t.Parallel()
	command, want := alternating(40)
	for name, ex := range map[string]*shell.Executor{"group": {}, "reaper": {Reaper: reaper(t)}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut, err := run(t.Context(), t, ex, mixmaster.ExecSpec{Command: command})
			if err != nil || code != 0 {
				t.Fatalf("got (%d, %v), want (0, nil)", code, err)
			}
			if out != want || errOut != "" {
				t.Fatalf("stdout %q, stderr %q; want %q, %q", out, errOut, want, "")
			}
		})
	}
}

// The same through the job log the runner gives Run: every line is an
// output line, in the order written.
func TestOutputOrderInJobLog(t *testing.T) {
	t.Parallel()
	command, want := alternating(40)
	files := &artifacts.Files{Root: t.TempDir()}
	const id mixmaster.JobID = 7
	log, err := files.Create(id)
	if err != nil {
		t.Fatal(err)
	}
	code, err := (&shell.Executor{Reaper: reaper(t)}).Run(t.Context(), mixmaster.ExecSpec{JobID: id, Command: command, Dir: t.TempDir()}, log.Stdout(), log.Stderr())
	if cerr := log.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil || code != 0 {
		t.Fatalf("got (%d, %v), want (0, nil)", code, err)
	}
	data, err := os.ReadFile(files.LogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	// Each line is "<time stamp> <mark> <text>".
	var got strings.Builder
	for line := range strings.Lines(string(data)) {
		rest := line[len(artifacts.TimeLayout)+1:]
		if !strings.HasPrefix(rest, "O ") {
			t.Fatalf("line %q is not marked as output", line)
		}
		got.WriteString(rest[2:])
	}
	if got.String() != want {
		t.Fatalf("log text %q, want %q", got.String(), want)
	}
}
