package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/wneessen/go-mail"

	"mixmaster"
)

// Defaults for the zero values of Mailer's fields.
const (
	// DefaultCommand is the original service's sendmail, plus -oi so that
	// a line holding a single dot does not end the message early.
	DefaultCommand = "/usr/sbin/sendmail -oi -t"
	// DefaultTimeout bounds one send, connection included.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxInFlight is how many sends may run at once.
	DefaultMaxInFlight = 4
	// DefaultLogLimit is how much log text a mail carries, from its end.
	DefaultLogLimit = 256 << 10
)

// Mailer mails a recipient when a job starts, finishes or fails. Mail goes
// through the SMTP relay at SMTPHost when it is set and through Command
// otherwise. Set the fields before the first Notify; Mailer is safe for
// concurrent use afterwards and must not be copied.
type Mailer struct {
	// To is the recipient, or a comma-separated list of them. Empty means
	// no mail is ever sent.
	To string
	// From is the sender. Empty means mixmaster@<Hostname> for SMTP; a
	// command is left to fill it in, as sendmail does for the service user.
	From string
	// Command is the sendmail-style program, split on spaces, that gets
	// the message on stdin and reads the recipients from its headers.
	// Empty means DefaultCommand.
	Command string
	// SMTPHost, when set, selects SMTP. STARTTLS is used when the relay
	// offers it, so a plain relay on loopback works too.
	SMTPHost string
	// SMTPPort is the relay's port; zero means 25.
	SMTPPort int
	// SMTPUser and SMTPPassword log in to the relay when SMTPUser is set.
	// The mechanism is picked from what the relay offers; PLAIN and LOGIN
	// are used only over TLS, so the password never travels in clear.
	SMTPUser, SMTPPassword string
	// Logger receives send failures and dropped mail; nil means
	// slog.Default().
	Logger *slog.Logger
	// Timeout bounds each send; zero means DefaultTimeout.
	Timeout time.Duration
	// Hostname names this host in Message-IDs and the default From; empty
	// means os.Hostname().
	Hostname string
	// MaxInFlight bounds the sends running at once; beyond it mail is
	// dropped and logged. Zero means DefaultMaxInFlight.
	MaxInFlight int
	// LogLimit caps the log text in finish and failure mail, which keeps
	// its end; zero means DefaultLogLimit.
	LogLimit int

	mu       sync.Mutex
	wg       sync.WaitGroup
	inFlight int
	closed   bool
}

var _ mixmaster.Notifier = (*Mailer)(nil)

// Notify sends the mail for n in the background and returns at once.
// Nothing is sent when To is empty or the job asked for no notifications.
// Failures are logged, never returned: a mail problem must not fail a
// build.
func (m *Mailer) Notify(ctx context.Context, n mixmaster.Notification) {
	if m.To == "" || !n.Job.Notify {
		return
	}
	log := m.logger().With("job_id", uint64(n.Job.ID), "kind", string(n.Kind))
	switch n.Kind {
	case mixmaster.NotifyStart, mixmaster.NotifyFinish, mixmaster.NotifyFailure:
	default:
		log.Error("mail not sent: unknown notification kind")
		return
	}
	msg, err := m.message(n)
	if err != nil {
		log.Error("mail not sent", "error", err)
		return
	}

	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		log.Warn("mail dropped: mailer closed")
		return
	case m.inFlight >= orDefault(m.MaxInFlight, DefaultMaxInFlight):
		m.mu.Unlock()
		log.Warn("mail dropped: too many sends in flight")
		return
	}
	m.inFlight++
	m.wg.Add(1)
	m.mu.Unlock()

	// The job's context ends with the job, but the finish mail is sent
	// after that, so only the timeout bounds the send.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.timeout())
	go func() {
		defer func() {
			cancel()
			m.mu.Lock()
			m.inFlight--
			m.mu.Unlock()
			m.wg.Done()
		}()
		if err := m.send(ctx, msg); err != nil {
			log.Error("mail not sent", "to", m.To, "error", err)
			return
		}
		log.Debug("mail sent", "to", m.To)
	}()
}

// Wait blocks until every send in flight has ended.
func (m *Mailer) Wait() {
	m.wg.Wait()
}

// Close makes later Notify calls drop their mail and waits for the sends
// in flight, each bounded by Timeout. It always returns nil.
func (m *Mailer) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

func (m *Mailer) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

func (m *Mailer) timeout() time.Duration {
	if m.Timeout > 0 {
		return m.Timeout
	}
	return DefaultTimeout
}

func (m *Mailer) hostname() string {
	if m.Hostname != "" {
		return m.Hostname
	}
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

// orDefault returns v, or def when v is not positive.
func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// message builds the mail for n.
func (m *Mailer) message(n mixmaster.Notification) (*mail.Msg, error) {
	host := m.hostname()
	msg := mail.NewMsg(mail.WithCharset(mail.CharsetUTF8))
	if err := msg.ToFromString(headerSafe(m.To)); err != nil {
		return nil, fmt.Errorf("recipient %q: %w", m.To, err)
	}
	from := m.From
	if from == "" && m.SMTPHost != "" {
		// SMTP needs a sender for MAIL FROM; sendmail picks its own.
		from = "mixmaster@" + hostPart(host)
	}
	if from != "" {
		if err := msg.From(headerSafe(from)); err != nil {
			return nil, fmt.Errorf("sender %q: %w", from, err)
		}
	}
	msg.Subject(headerSafe(subject(n)))
	msg.SetDate()
	msg.SetMessageIDWithValue(messageID(&n.Job, n.Kind, host))
	if n.Kind != mixmaster.NotifyStart {
		start := "<" + messageID(&n.Job, mixmaster.NotifyStart, host) + ">"
		msg.SetGenHeader(mail.HeaderInReplyTo, start)
		msg.SetGenHeader(mail.HeaderReferences, start)
	}
	msg.SetUserAgent("mixmaster")
	msg.SetBodyString(mail.TypeTextPlain, body(n, orDefault(m.LogLimit, DefaultLogLimit)))
	return msg, nil
}

// send delivers msg by SMTP or through the command.
func (m *Mailer) send(ctx context.Context, msg *mail.Msg) error {
	if m.SMTPHost != "" {
		return m.sendSMTP(ctx, msg)
	}
	return m.sendCommand(ctx, msg)
}

func (m *Mailer) sendSMTP(ctx context.Context, msg *mail.Msg) error {
	opts := []mail.Option{
		mail.WithTLSPolicy(mail.TLSOpportunistic),
		mail.WithTimeout(m.timeout()),
	}
	if m.SMTPPort != 0 {
		opts = append(opts, mail.WithPort(m.SMTPPort))
	}
	if m.SMTPUser != "" {
		opts = append(opts,
			mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(m.SMTPUser),
			mail.WithPassword(m.SMTPPassword))
	}
	c, err := mail.NewClient(m.SMTPHost, opts...)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", m.SMTPHost, err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("smtp %s: %w", m.SMTPHost, err)
	}
	return nil
}

// sendCommand pipes msg into the sendmail-style command. It runs the
// command itself rather than through go-mail, which would add its own
// flags and treat any stderr output as failure; here the exit status
// decides.
func (m *Mailer) sendCommand(ctx context.Context, msg *mail.Msg) error {
	command := m.Command
	if strings.TrimSpace(command) == "" {
		command = DefaultCommand
	}
	argv := strings.Fields(command)
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		return fmt.Errorf("format mail: %w", err)
	}
	// Local submission takes lines ending in LF, as mail(1) writes them;
	// some sendmail versions would keep the CR of CRLF in the message.
	data := bytes.ReplaceAll(buf.Bytes(), []byte("\r\n"), []byte("\n"))

	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	out := &capped{max: 4 << 10}
	cmd.Stdout = out
	cmd.Stderr = out
	// A child that keeps the pipes open must not hold Wait past the
	// deadline.
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); errors.Is(ctxErr, context.DeadlineExceeded) {
			err = fmt.Errorf("%w after %v", ctxErr, m.timeout())
		}
		if s := strings.TrimSpace(out.String()); s != "" {
			return fmt.Errorf("%s: %w: %s", argv[0], err, s)
		}
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	return nil
}

// capped keeps the first max bytes written to it, so a chatty command
// cannot grow a log line without bound.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
