package notify

import (
	"strings"
	"testing"

	"mixmaster"
)

func TestBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    mixmaster.Notification
		want string
	}{
		{
			"start without commit or URL",
			mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: mixmaster.Job{Project: "p", Target: "main"}},
			"Mixmaster has started building main.\n",
		},
		{
			"task without commit",
			mixmaster.Notification{Kind: mixmaster.NotifyStart, Job: mixmaster.Job{Project: "p", Target: "main", Task: "docs"}},
			"Mixmaster has started the docs task on main.\n",
		},
		{
			"short commit kept whole",
			mixmaster.Notification{Kind: mixmaster.NotifyFinish, Job: mixmaster.Job{Project: "p", Target: "main", Commit: "abc"}},
			"Mixmaster has finished building abc on main.\n",
		},
		{
			"artifact job named by project",
			mixmaster.Notification{Kind: mixmaster.NotifyFinish, Job: mixmaster.Job{Project: "img", Kind: mixmaster.KindArtifact}, Log: "done\n"},
			"Mixmaster has finished building img.\n\nBuild log:\ndone\n",
		},
		{
			"errored without exit code",
			mixmaster.Notification{Kind: mixmaster.NotifyFailure, Job: mixmaster.Job{Project: "p", Target: "main", Status: mixmaster.StatusErrored, Error: "checkout: no such ref"}},
			"Mixmaster was unable to build main.\n\nStatus: errored\nError: checkout: no such ref\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := body(tc.n, DefaultLogLimit); got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestBodyKeepsLogEnd(t *testing.T) {
	var log strings.Builder
	for range 1000 {
		log.WriteString("some output line\n")
	}
	log.WriteString("the error at the end\n")
	got := body(mixmaster.Notification{Kind: mixmaster.NotifyFailure, Job: mixmaster.Job{Target: "main"}, Log: log.String()}, 100)
	if !strings.HasSuffix(got, "some output line\nthe error at the end\n") {
		t.Errorf("end of log lost:\n%s", got)
	}
	if !strings.Contains(got, "bytes of the log left out]\nsome output line\n") {
		t.Errorf("no note, or the tail starts mid-line:\n%s", got)
	}
	if len(got) > 300 {
		t.Errorf("body of %d bytes with a limit of 100", len(got))
	}
}

func TestHeaderSafe(t *testing.T) {
	if got := headerSafe("a\r\nBcc: x\x00\tb"); got != "a  Bcc: x  b" {
		t.Errorf("got %q", got)
	}
	if got := hostPart("h\r\nBcc: x@y"); got != "hBccxy" {
		t.Errorf("got %q", got)
	}
	if got := hostPart("\r\n"); got != "localhost" {
		t.Errorf("got %q", got)
	}
}
