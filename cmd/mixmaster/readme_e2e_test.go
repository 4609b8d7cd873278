package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mixmaster/internal/testenv"
)

// readmeMarker stands on the line before each shell block of README.md
// that works as written right after `make run`.
const readmeMarker = "<!-- run after make run: the README test runs this block -->"

// readmeCommands returns the command lines of the marked blocks, in order,
// without blank and comment lines.
func readmeCommands(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []string
	sc := bufio.NewScanner(f)
	marked, in := false, false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case in && strings.HasPrefix(line, "```"):
			in = false
		case in:
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				cmds = append(cmds, l)
			}
		case marked:
			if line != "```sh" {
				t.Fatalf("%s:%d: the marker must stand right before a ```sh block", path, n)
			}
			marked, in = false, true
		case line == readmeMarker:
			marked = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cmds
}

// TestReadmeCommands runs the README's marked commands in order, each with
// sh -c in the checkout's place and a HOME without any config, against the
// real binary started as `make run` starts it. The demo listens on a free
// port rather than 8585, which may be taken here: the lines' address is
// replaced, and $MIXMASTER_URL names it for the commands that default to
// it.
func TestReadmeCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the README's demo")
	}
	for _, tool := range []string{"git", "curl"} {
		_, err := exec.LookPath(tool)
		testenv.Need(t, tool, err == nil, tool+" not on PATH")
	}
	cmds := readmeCommands(t, filepath.Join("..", "..", "README.md"))
	for _, want := range []string{"curl --json", "mixmaster build", "mixmaster recipe", "mixmaster prune", "mixmaster backup", "mixmaster passwd"} {
		if !strings.Contains(strings.Join(cmds, "\n"), want) {
			t.Errorf("the README's marked blocks have no %q", want)
		}
	}

	// The checkout: dist/mixmaster as make build leaves it, and the
	// installed name on PATH.
	work, home, bin := t.TempDir(), t.TempDir(), t.TempDir()
	// No mixmaster config in HOME; only curl's, so that an HTTP error
	// fails the line as any other command's failure does.
	if err := os.WriteFile(filepath.Join(home, ".curlrc"), []byte("fail-with-body\nsilent\nshow-error\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(work, "dist"), 0o755)
	for _, link := range []string{filepath.Join(work, "dist", "mixmaster"), filepath.Join(bin, "mixmaster")} {
		if err := os.Symlink(binary(t), link); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	env := append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME=", "MIXMASTER_CONFIG=", "MIXMASTER_TOKEN=",
		"MIXMASTER_URL=http://"+addr, "MIXMASTER_DOCKER=off",
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	serve := exec.Command("./dist/mixmaster", "serve", "--demo", "--build-root", ".demo", "--listen", addr)
	serve.Dir, serve.Env = work, env
	var logs syncBuffer
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		serve.Process.Kill()
		serve.Wait()
		if t.Failed() {
			t.Logf("service log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "mixmaster: serving on http://"+addr) {
		if time.Now().After(deadline) {
			t.Fatal("the demo never said it serves")
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, line := range cmds {
		line = strings.ReplaceAll(line, "127.0.0.1:8585", addr)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, "sh", "-c", line)
		cmd.Dir, cmd.Env = work, env
		cmd.Stdin = strings.NewReader("s3cret\n") // for passwd
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s: %v\n%s", line, err, out)
		}
	}
}
