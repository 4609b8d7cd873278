package notify

import (
	"fmt"
	"strings"

	"mixmaster"
)

// subject returns the subject of a notification. Finish and failure mail
// reply to the start mail, as the original service did, so a mail reader
// shows a build as one thread.
func subject(n mixmaster.Notification) string {
	s := "[mixmaster] Building " + n.Job.Project
	if n.Kind != mixmaster.NotifyStart {
		s = "Re: " + s
	}
	return s
}

// body returns the plain-text body of a notification, worded as the
// original service worded it. logLimit caps the log text it carries.
func body(n mixmaster.Notification, logLimit int) string {
	j := &n.Job
	var b strings.Builder
	switch n.Kind {
	case mixmaster.NotifyStart:
		if j.Task != "" {
			fmt.Fprintf(&b, "Mixmaster has started the %s task on %s.", headerSafe(j.Task), where(j))
		} else {
			fmt.Fprintf(&b, "Mixmaster has started building %s.", where(j))
		}
	case mixmaster.NotifyFinish:
		fmt.Fprintf(&b, "Mixmaster has finished building %s.", where(j))
	default:
		fmt.Fprintf(&b, "Mixmaster was unable to build %s.", where(j))
		b.WriteString("\n\nStatus: " + string(j.Status))
		if j.ExitCode != nil {
			fmt.Fprintf(&b, " (exit code %d)", *j.ExitCode)
		}
		if j.Error != "" {
			b.WriteString("\nError: " + j.Error)
		}
	}
	if j.ViewURL != "" {
		// A payload's view URL may carry a token, as clone URLs do.
		b.WriteString("\n\n" + mixmaster.RedactURL(j.ViewURL))
	}
	if n.Kind == mixmaster.NotifyStart {
		if msg := strings.TrimSpace(j.Message); msg != "" {
			b.WriteString("\n\n" + msg)
		}
	} else if log := strings.TrimRight(n.Log, "\n"); log != "" {
		b.WriteString("\n\nBuild log:\n" + tail(log, logLimit))
	}
	b.WriteString("\n")
	return b.String()
}

// where is "<short commit> on <target>", or just the target when there is
// no commit. Artifact jobs have no target; they are named by project.
func where(j *mixmaster.Job) string {
	target := j.Target
	if target == "" {
		target = j.Project
	}
	// Names are one line each, even if a payload says otherwise.
	target = headerSafe(target)
	if c := j.ShortCommit(); c != "" {
		return headerSafe(c) + " on " + target
	}
	return target
}

// tail keeps the last limit bytes of log, starting at a line, because the
// end of a log is where a failure shows. A mail of many megabytes would
// be refused by most relays anyway.
func tail(log string, limit int) string {
	if len(log) <= limit {
		return log
	}
	cut := len(log) - limit
	if i := strings.IndexByte(log[cut:], '\n'); i >= 0 {
		cut += i + 1
	}
	return fmt.Sprintf("[first %d bytes of the log left out]\n", cut) + log[cut:]
}

// headerSafe replaces control characters, CR and LF above all, with
// spaces. Job fields come from webhook payloads; a newline in a header
// value would let a payload add headers such as Bcc.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// hostPart keeps only the characters a domain may hold, so that a host
// name can be put into a Message-ID as it is.
func hostPart(host string) string {
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return -1
	}, host)
	if host == "" {
		return "localhost"
	}
	return host
}

// messageID returns the Message-ID (without angle brackets) of the mail
// about job at moment kind. It is derived from the job, so the finish mail
// can name the start mail in In-Reply-To without any stored state. The
// queue time is part of it because job IDs start again at 1 when the
// database is replaced, and mail readers would thread unrelated builds.
func messageID(j *mixmaster.Job, kind mixmaster.NotificationKind, host string) string {
	id := "mixmaster-job-" + j.ID.String()
	if !j.QueuedAt.IsZero() {
		id += fmt.Sprintf(".%d", j.QueuedAt.Unix())
	}
	if kind != mixmaster.NotifyStart {
		id += "." + string(kind)
	}
	return id + "@" + hostPart(host)
}
