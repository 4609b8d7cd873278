package artifacts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"mixmaster"
)

// fixedNow is a clock in a non-UTC zone, to show that logs are stamped in UTC.
func fixedNow() time.Time {
	return time.Date(2026, 3, 4, 7, 8, 9, 123456789, time.FixedZone("X", 2*3600))
}

const stamp = "2026-03-04T05:08:09.123Z"

// events records published events.
type events struct {
	mu  sync.Mutex
	got []mixmaster.Event
}

func (e *events) Publish(ev mixmaster.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) Subscribe(mixmaster.JobID) (<-chan mixmaster.Event, func()) {
	panic("not used")
}

func (e *events) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.got)
}

func newFiles(t *testing.T) *Files {
	t.Helper()
	return &Files{Root: t.TempDir(), Now: fixedNow}
}

func mustCreate(t *testing.T, f *Files, id mixmaster.JobID) mixmaster.Log {
	t.Helper()
	l, err := f.Create(id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustWrite(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if n, err := io.WriteString(w, s); err != nil || n != len(s) {
		t.Fatalf("write %q: n=%d err=%v", s, n, err)
	}
}

func mustClose(t *testing.T, l mixmaster.Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func readLog(t *testing.T, f *Files, id mixmaster.JobID) string {
	t.Helper()
	b, err := os.ReadFile(f.LogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lines returns "<mark> <text>" for each log line, checking the stamp.
func lines(t *testing.T, log string) []string {
	t.Helper()
	var out []string
	for line := range strings.SplitSeq(strings.TrimSuffix(log, "\n"), "\n") {
		if len(line) < len(TimeLayout)+3 || line[len(TimeLayout)] != ' ' {
			t.Fatalf("malformed line %.80q", line)
		}
		if _, err := time.Parse(TimeLayout, line[:len(TimeLayout)]); err != nil {
			t.Fatalf("bad stamp in %.80q: %v", line, err)
		}
		out = append(out, line[len(TimeLayout)+1:])
	}
	return out
}

func TestPaths(t *testing.T) {
	f := &Files{Root: "/srv/build"}
	for _, tc := range []struct{ got, want string }{
		{f.JobDir(42), "/srv/build/jobs/42"},
		{f.LogPath(42), "/srv/build/jobs/42/log"},
		{f.ArtifactsDir(42), "/srv/build/jobs/42/artifacts"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	f := newFiles(t)
	l := mustCreate(t, f, 1)
	l.Status("Build started in %s", "/w")
	l.Command("make test")
	mustWrite(t, l.Stdout(), "out 1\nout 2\r\n")
	mustWrite(t, l.Stderr(), "err 1\n")
	l.Status("two\nlines\n")
	l.Status("100% literal")
	l.Command("printf 'a\nb'")
	mustWrite(t, l.Stdout(), "\n")
	mustClose(t, l)

	want := strings.Join([]string{
		stamp + " # Build started in /w",
		stamp + " $ make test",
		stamp + " O out 1",
		stamp + " O out 2",
		stamp + " ! err 1",
		stamp + " # two",
		stamp + " # lines",
		stamp + " # 100% literal",
		stamp + " $ printf 'a",
		stamp + " $ b'",
		stamp + " O ",
	}, "\n") + "\n"
	if got := readLog(t, f, 1); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
}

func TestPartialLinesFlushedOnClose(t *testing.T) {
	f := newFiles(t)
	l := mustCreate(t, f, 1)
	mustWrite(t, l.Stdout(), "hel")
	mustWrite(t, l.Stderr(), "oops")
	mustWrite(t, l.Stdout(), "lo\r\nwor")
	mustWrite(t, l.Stdout(), "ld")
	if got := lines(t, readLog(t, f, 1)); len(got) != 1 || got[0] != "O hello" {
		t.Fatalf("before close: %q", got)
	}
	mustClose(t, l)
	want := []string{"O hello", "O world", "! oops"}
	if got := lines(t, readLog(t, f, 1)); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := l.Stdout().Write([]byte("late\n")); err == nil {
		t.Error("write after close succeeded")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestAppendsToExistingLog(t *testing.T) {
	f := newFiles(t)
	l := mustCreate(t, f, 3)
	l.Status("first")
	mustClose(t, l)
	l = mustCreate(t, f, 3)
	l.Status("second")
	mustClose(t, l)
	if got := lines(t, readLog(t, f, 3)); strings.Join(got, "|") != "# first|# second" {
		t.Errorf("got %q", got)
	}
}

// TestConcurrentWritersKeepWholeLines writes stdout and stderr from their
// own goroutines in random chunk sizes, as an executor's copy loops do,
// while other goroutines add status lines and whole lines.
func TestConcurrentWritersKeepWholeLines(t *testing.T) {
	f := newFiles(t)
	f.Now = time.Now
	l := mustCreate(t, f, 7)
	const n = 2000
	stream := func(w io.Writer, prefix string, seed uint64) {
		var all bytes.Buffer
		for i := range n {
			fmt.Fprintf(&all, "%s line %d %s\n", prefix, i, strings.Repeat("x", i%50))
		}
		r := rand.New(rand.NewPCG(seed, seed))
		b := all.Bytes()
		for len(b) > 0 {
			k := min(len(b), 1+r.IntN(200))
			if _, err := w.Write(b[:k]); err != nil {
				t.Error(err)
				return
			}
			b = b[k:]
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { stream(l.Stdout(), "out", 1) })
	wg.Go(func() { stream(l.Stderr(), "err", 2) })
	wg.Go(func() {
		for i := range n {
			l.Status("status %d", i)
		}
	})
	wg.Wait()
	mustClose(t, l)
	got := lines(t, readLog(t, f, 7))
	next := map[string]int{}
	for _, line := range got {
		var prefix string
		var i int
		switch line[0] {
		case 'O', '!':
			if _, err := fmt.Sscanf(line[2:], "%s line %d", &prefix, &i); err != nil {
				t.Fatalf("torn line %q", line)
			}
			if want := fmt.Sprintf("%s line %d %s", prefix, i, strings.Repeat("x", i%50)); line[2:] != want {
				t.Fatalf("torn line %q", line)
			}
			if (line[0] == 'O') != (prefix == "out") {
				t.Fatalf("line under the wrong mark: %q", line)
			}
		case '#':
			prefix = "status"
			if _, err := fmt.Sscanf(line[2:], "status %d", &i); err != nil {
				t.Fatalf("torn line %q", line)
			}
		default:
			t.Fatalf("unexpected line %q", line)
		}
		if next[prefix] != i {
			t.Fatalf("%s: got line %d, want %d", prefix, i, next[prefix])
		}
		next[prefix]++
	}
	for _, p := range []string{"out", "err", "status"} {
		if next[p] != n {
			t.Errorf("%s: %d lines, want %d", p, next[p], n)
		}
	}
}

// TestConcurrentWholeLinesOneStream has many goroutines share one stream,
// each writing whole lines, as a shell's children do when they share its
// stdout.
func TestConcurrentWholeLinesOneStream(t *testing.T) {
	f := newFiles(t)
	l := mustCreate(t, f, 8)
	const writers, n = 16, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range n {
				if _, err := fmt.Fprintf(l.Stdout(), "g%d %d %s\n", g, i, strings.Repeat("y", 100)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	mustClose(t, l)
	got := lines(t, readLog(t, f, 8))
	if len(got) != writers*n {
		t.Fatalf("%d lines, want %d", len(got), writers*n)
	}
	next := make([]int, writers)
	for _, line := range got {
		var g, i int
		if _, err := fmt.Sscanf(line, "O g%d %d", &g, &i); err != nil || line != fmt.Sprintf("O g%d %d %s", g, i, strings.Repeat("y", 100)) {
			t.Fatalf("torn line %q", line)
		}
		if next[g] != i {
			t.Fatalf("g%d: got %d, want %d", g, i, next[g])
		}
		next[g]++
	}
}

// TestHugeLine writes a 10 MiB line with no newline in one call and checks
// that it is split into MaxLine pieces without holding a copy of it.
func TestHugeLine(t *testing.T) {
	for _, chunk := range []int{10 << 20, 4096} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			f := newFiles(t)
			l := mustCreate(t, f, 9)
			line := bytes.Repeat([]byte("0123456789abcdef"), (10<<20)/16)

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for b := line; len(b) > 0; b = b[min(chunk, len(b)):] {
				if _, err := l.Stdout().Write(b[:min(chunk, len(b))]); err != nil {
					t.Fatal(err)
				}
			}
			mustWrite(t, l.Stdout(), "\nnext\n")
			runtime.ReadMemStats(&after)
			// Allocation over the whole write: a copy of the line would be
			// 10 MiB; buffers of a few MaxLine are expected.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
				t.Errorf("allocated %d bytes for a %d-byte line", alloc, len(line))
			}
			mustClose(t, l)

			got := lines(t, readLog(t, f, 9))
			if want := len(line)/MaxLine + 1; len(got) != want {
				t.Fatalf("%d lines, want %d", len(got), want)
			}
			var joined strings.Builder
			for _, g := range got[:len(got)-1] {
				if !strings.HasPrefix(g, "O ") || len(g)-2 > MaxLine {
					t.Fatalf("bad piece: %.40q (%d bytes)", g, len(g))
				}
				joined.WriteString(g[2:])
			}
			if joined.String() != string(line) {
				t.Error("pieces do not add up to the line")
			}
			if got[len(got)-1] != "O next" {
				t.Errorf("last line %q", got[len(got)-1])
			}
		})
	}
}

func TestLongLineEdges(t *testing.T) {
	x := strings.Repeat("x", MaxLine)
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"exactly MaxLine", x + "\n", []string{"O " + x}},
		{"exactly MaxLine with CRLF", x + "\r\n", []string{"O " + x}},
		{"MaxLine plus one", x + "y\n", []string{"O " + x, "O y"}},
		{"twice MaxLine", x + x + "\n", []string{"O " + x, "O " + x}},
		// A 4-byte character straddling the cut moves to the next piece.
		{"utf8 at cut", x[:MaxLine-2] + "😀z\n", []string{"O " + x[:MaxLine-2], "O 😀z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A step of MaxLine+1 ends a write between the \r and \n of a
			// CRLF after MaxLine bytes.
			for _, step := range []int{7, MaxLine + 1, len(tc.in)} {
				f := newFiles(t)
				l := mustCreate(t, f, 1)
				for s := tc.in; s != ""; s = s[min(step, len(s)):] {
					mustWrite(t, l.Stdout(), s[:min(step, len(s))])
				}
				mustClose(t, l)
				got := lines(t, readLog(t, f, 1))
				if len(got) != len(tc.want) {
					t.Fatalf("step %d: %d lines, want %d", step, len(got), len(tc.want))
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Errorf("step %d: line %d is %.20q… (%d bytes), want %.20q… (%d bytes)", step, i, got[i], len(got[i]), tc.want[i], len(tc.want[i]))
					}
				}
			}
		})
	}
}

func TestLimit(t *testing.T) {
	f := newFiles(t)
	f.LogLimit = 1000
	l := mustCreate(t, f, 5)
	l.Command("make")
	for i := range 100 {
		s := fmt.Sprintf("output line %02d\n", i)
		mustWrite(t, l.Stdout(), s)
		mustWrite(t, l.Stderr(), s)
	}
	l.Status("Build failed: exit 2")
	l.Command("cleanup")
	mustWrite(t, l.Stdout(), "partial")
	mustClose(t, l)

	log := readLog(t, f, 5)
	got := lines(t, log)
	var marker, after int
	var kept []string
	for _, line := range got {
		switch {
		case line == "# [log truncated: output beyond 1000 bytes is dropped]":
			marker++
		case marker > 0:
			after++
		case line[0] == 'O' || line[0] == '!':
			kept = append(kept, line)
		}
	}
	if marker != 1 {
		t.Fatalf("%d truncation markers in:\n%s", marker, log)
	}
	// Every output line not kept was dropped, and the partial line too.
	dropped := 200*len("output line 00\n") - len(kept)*len("output line 00\n") + len("partial")
	tailWant := []string{
		"# Build failed: exit 2",
		"$ cleanup",
		fmt.Sprintf("# [log truncated: %d bytes of output dropped]", dropped),
	}
	if strings.Join(got[len(got)-3:], "|") != strings.Join(tailWant, "|") || after != 3 {
		t.Errorf("end of log:\n%q\nwant\n%q", got[len(got)-after:], tailWant)
	}
	// Output stays under the limit; only the notes go past it.
	if head := strings.Index(log, stamp+" # [log truncated"); head > 1000 {
		t.Errorf("output reached byte %d, limit 1000", head)
	}
}

func TestEventsPublished(t *testing.T) {
	f := newFiles(t)
	ev := &events{}
	f.Events = ev
	l := mustCreate(t, f, 11)
	l.Status("a")
	mustWrite(t, l.Stdout(), "no newline yet")
	if n := ev.count(); n != 1 {
		t.Errorf("%d events after a status line and a partial line, want 1", n)
	}
	mustWrite(t, l.Stdout(), "\n")
	l.Command("x")
	if n := ev.count(); n != 3 {
		t.Errorf("%d events, want 3", n)
	}
	mustWrite(t, l.Stderr(), "tail")
	mustClose(t, l)
	if n := ev.count(); n != 4 {
		t.Errorf("%d events after close flushed a line, want 4", n)
	}
	for _, e := range ev.got {
		if e != (mixmaster.Event{JobID: 11}) {
			t.Errorf("event %+v", e)
		}
	}
}

func TestOpenWhileWriting(t *testing.T) {
	f := newFiles(t)
	l := mustCreate(t, f, 12)
	l.Status("started")
	r, err := f.Open(12)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	br := bufio.NewReader(r)
	first, err := br.ReadString('\n')
	if err != nil || first != stamp+" # started\n" {
		t.Fatalf("first line %q, %v", first, err)
	}
	if _, err := br.ReadString('\n'); err != io.EOF {
		t.Fatalf("expected EOF at the end of what was written, got %v", err)
	}
	mustWrite(t, l.Stdout(), "more\n")
	if line, err := br.ReadString('\n'); err != nil || line != stamp+" O more\n" {
		t.Fatalf("second line %q, %v", line, err)
	}
	mustClose(t, l)
}

func TestOpenNotFound(t *testing.T) {
	f := newFiles(t)
	_, err := f.Open(99)
	if mixmaster.ErrorCode(err) != mixmaster.ENOTFOUND {
		t.Fatalf("got %v (code %q), want ENOTFOUND", err, mixmaster.ErrorCode(err))
	}
	if _, err := f.Tail(99, 10); mixmaster.ErrorCode(err) != mixmaster.ENOTFOUND {
		t.Fatalf("tail: got %v, want ENOTFOUND", err)
	}
}

func TestTail(t *testing.T) {
	f := newFiles(t)
	l := mustCreate(t, f, 13)
	for i := range 10 {
		l.Status("line %d", i)
	}
	mustClose(t, l)
	full := readLog(t, f, 13)
	lineLen := int64(len(stamp + " # line 0\n"))
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, ""},
		{lineLen - 1, ""},
		{lineLen, stamp + " # line 9\n"},
		{lineLen + 1, stamp + " # line 9\n"},
		{2 * lineLen, stamp + " # line 8\n" + stamp + " # line 9\n"},
		{10 * lineLen, full},
		{1 << 20, full},
	} {
		got, err := f.Tail(13, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("Tail(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meta.json")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFileAtomic(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("got %q, %v; want %q", got, err, content)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	err = WriteFileAtomic(filepath.Join(dir, "missing", "x"), []byte("x"), 0o644)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("write into a missing folder: %v", err)
	}
}
