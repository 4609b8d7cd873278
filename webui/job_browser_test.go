package webui

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/labstack/echo/v4"

	"mixmaster"
	"mixmaster/internal/testenv"
)

// TestJobPageFoldsLiveCheckout opens the page of a running job in
// Chromium and streams it a checkout and a build: the script folds the
// checkout as the server does, under its closing line, and the build's
// command is the first one shown.
func TestJobPageFoldsLiveCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	path, err := exec.LookPath("chromium")
	testenv.Need(t, "chromium", err == nil, "chromium not found")
	f := newFixture(t)
	job := f.run(&mixmaster.Job{Project: "demo/hello", Target: "production"}, mixmaster.StatusRunning)
	done := mixmaster.CheckoutDone + "1a2b3c4d of https://xxxxx@git.example.com/demo/hello.git (2 git commands, 0.4 s)"
	lines := checkoutLog(rawLine("#", done)) + rawLine("$", "make deploy") + rawLine("O", "deployed")
	// The api package streams logs; this stands in for it.
	f.e.GET("/log/*", func(c echo.Context) error {
		w := c.Response()
		w.Header().Set("Content-Type", "text/event-stream")
		for line := range strings.Lines(lines) {
			fmt.Fprintf(w, "data: %s\n\n", strings.TrimSuffix(line, "\n"))
		}
		fmt.Fprint(w, "event: end\ndata: succeeded\n\n")
		return nil
	})
	srv := httptest.NewServer(f.e)
	t.Cleanup(srv.Close)

	// Not t.TempDir: Chromium's helpers may still write there as it exits.
	profile, err := os.MkdirTemp("", "mixmaster-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.NoSandbox, chromedp.ExecPath(path),
		chromedp.Flag("disable-gpu", true), chromedp.UserDataDir(profile))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc(); os.RemoveAll(profile) })
	ctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+jobURL(job.Project, job.ID))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`!!document.querySelector('#log > .ln.o')`)); err != nil {
		t.Fatalf("the build's output never showed: %v", err)
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	summary := eval(`document.querySelector('#log > details.fold > summary .tx').textContent`)
	open := eval(`String(document.querySelector('#log > details.fold').open)`)
	folded := eval(`String([...document.querySelectorAll('#log > details.fold > .ln .tx')].some(e => e.textContent.startsWith('git clone')))`)
	firstCommand := eval(`document.querySelector('#log > .ln.c .tx').textContent`)
	if summary != done || open != "false" || folded != "true" {
		t.Errorf("fold: summary %q, open %s, git lines inside %s", summary, open, folded)
	}
	if firstCommand != "make deploy" {
		t.Errorf("the first command shown is %q", firstCommand)
	}
}
