package mixmaster

import (
	"bytes"
	"io"
	"unicode/utf8"
)

// SafeTerminalText returns b with every terminal control sequence made
// harmless, for build output shown on a terminal; see TerminalWriter.
func SafeTerminalText(b []byte, keepColor bool) []byte {
	var out bytes.Buffer
	w := NewTerminalWriter(&out, keepColor)
	w.Write(b) // a bytes.Buffer does not fail
	w.Close()
	return out.Bytes()
}

// TerminalWriter passes text on to another writer with terminal control
// sequences neutralised, so that build output cannot move the cursor,
// rewrite what was shown, set the window title, plant hyperlinks, talk to
// the terminal or hide text. Escape sequences (CSI, OSC and other strings,
// ESC pairs) and their C1 forms are dropped whole, as are other control
// characters; a carriage return not followed by a newline becomes one, so
// text can be overwritten on no line; bytes that are not UTF-8 become
// U+FFFD. Tabs and newlines stay. With keepColor, SGR sequences (ESC [ …
// m) stay, except those that conceal text.
//
// Sequences may be split across writes; Close ends the text, dropping an
// unfinished sequence. A string sequence (OSC, DCS, …) ends at a newline
// too, so one without its terminator cannot swallow the rest of a log.
type TerminalWriter struct {
	w         io.Writer
	keepColor bool
	state     termState
	seq       []byte // the CSI sequence read so far, when colours may be kept
	overlong  bool   // seq outgrew maxSequence and will not be kept
	partial   []byte // the start of a UTF-8 sequence split by a write
	cr        bool   // a carriage return waits to see what follows
	colored   bool   // a colour passed on is still set, to be reset at the end
	out       []byte
}

type termState int

const (
	termText     termState = iota
	termEscape             // after ESC
	termEscInter           // ESC and intermediate bytes, before the final one
	termCSI                // in a control sequence
	termString             // in an OSC, DCS, SOS, PM or APC string
	termStrEsc             // ESC inside such a string: ST or a new sequence
)

// maxSequence bounds the CSI kept to be passed on as a colour; no colour
// is longer.
const maxSequence = 64

const (
	esc = 0x1b
	bel = 0x07
)

// sgrReset ends the colours passed on, at Close.
var sgrReset = []byte("\x1b[0m")

// NewTerminalWriter returns a TerminalWriter writing to w.
func NewTerminalWriter(w io.Writer, keepColor bool) *TerminalWriter {
	return &TerminalWriter{w: w, keepColor: keepColor}
}

// Write neutralises p and writes the result. It reports len(p) unless the
// underlying writer fails.
func (t *TerminalWriter) Write(p []byte) (int, error) {
	t.out = t.out[:0]
	data := p
	if len(t.partial) > 0 {
		data = append(t.partial, p...)
		t.partial = nil
	}
	for len(data) > 0 {
		if !utf8.FullRune(data) {
			t.partial = append([]byte(nil), data...)
			break
		}
		r, n := utf8.DecodeRune(data)
		t.step(r, data[:n])
		data = data[n:]
	}
	if err := t.flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the text: a split character becomes U+FFFD, a waiting
// carriage return a newline, an unfinished sequence is dropped, and kept
// colours are reset. It does not close the underlying writer.
func (t *TerminalWriter) Close() error {
	t.out = t.out[:0]
	if len(t.partial) > 0 {
		t.partial = nil
		t.step(utf8.RuneError, nil)
	}
	t.resolveCR(0)
	t.state = termText
	if t.colored {
		t.out = append(t.out, sgrReset...)
		t.colored = false
	}
	return t.flush()
}

func (t *TerminalWriter) flush() error {
	if len(t.out) == 0 {
		return nil
	}
	_, err := t.w.Write(t.out)
	return err
}

// resolveCR settles a waiting carriage return now that r follows it: a
// CRLF is one newline, a lone CR becomes one. It reports whether r was
// the LF and is consumed.
func (t *TerminalWriter) resolveCR(r rune) bool {
	if !t.cr {
		return false
	}
	t.cr = false
	t.out = append(t.out, '\n')
	return r == '\n'
}

// step handles one character; raw is its encoding, nil for U+FFFD that
// stands in for bytes that are not UTF-8.
func (t *TerminalWriter) step(r rune, raw []byte) {
	if r == utf8.RuneError && len(raw) <= 1 {
		raw = nil
	}
	switch t.state {
	case termText:
		t.text(r, raw)
	case termEscape:
		t.escape(r, raw)
	case termEscInter:
		switch {
		case r >= 0x20 && r <= 0x2f:
		case r >= 0x30 && r <= 0x7e:
			t.state = termText
		default:
			t.state = termText
			t.step(r, raw)
		}
	case termCSI:
		t.csi(r, raw)
	case termString:
		switch {
		case r == bel || r == 0x9c: // BEL or ST ends the string
			t.state = termText
		case r == esc:
			t.state = termStrEsc
		case r == '\n' || r == '\r':
			t.state = termText
			t.step(r, raw)
		}
	case termStrEsc:
		if r == '\\' { // ESC \ is ST
			t.state = termText
			return
		}
		t.state = termEscape
		t.step(r, raw)
	}
}

// text handles a character outside any sequence.
func (t *TerminalWriter) text(r rune, raw []byte) {
	if t.resolveCR(r) {
		return
	}
	switch {
	case r == '\t' || r == '\n':
		t.out = append(t.out, byte(r))
	case r == '\r':
		t.cr = true
	case r == esc:
		t.state = termEscape
	case r == 0x9b: // CSI
		t.startCSI()
	case r == 0x90 || r == 0x98 || r == 0x9d || r == 0x9e || r == 0x9f: // DCS, SOS, OSC, PM, APC
		t.state = termString
	case r < 0x20 || r >= 0x7f && r < 0xa0:
		// BEL, backspace, DEL, the other C0 and C1 controls: dropped.
	case raw == nil:
		t.out = utf8.AppendRune(t.out, utf8.RuneError)
	default:
		t.out = append(t.out, raw...)
	}
}

// escape handles the character after an ESC.
func (t *TerminalWriter) escape(r rune, raw []byte) {
	switch {
	case r == '[':
		t.startCSI()
	case r == ']' || r == 'P' || r == 'X' || r == '^' || r == '_':
		t.state = termString
	case r >= 0x20 && r <= 0x2f:
		t.state = termEscInter
	case r >= 0x30 && r <= 0x7e:
		t.state = termText // a two-character sequence, dropped
	default:
		// Not a sequence: the ESC alone is dropped.
		t.state = termText
		t.step(r, raw)
	}
}

func (t *TerminalWriter) startCSI() {
	t.state = termCSI
	t.seq = append(t.seq[:0], esc, '[')
	t.overlong = false
}

// csi handles a character of a control sequence: parameter and
// intermediate bytes, then a final byte.
func (t *TerminalWriter) csi(r rune, raw []byte) {
	switch {
	case r >= 0x20 && r <= 0x3f:
		if len(t.seq) < maxSequence {
			t.seq = append(t.seq, byte(r))
		} else {
			t.overlong = true
		}
	case r >= 0x40 && r <= 0x7e:
		t.state = termText
		if t.keepColor && r == 'm' && !t.overlong && harmlessSGR(t.seq[2:]) {
			t.out = append(append(t.out, t.seq...), 'm')
			params := string(t.seq[2:])
			t.colored = params != "" && params != "0"
		}
	default:
		// A malformed sequence ends here, dropped; the character counts.
		t.state = termText
		t.step(r, raw)
	}
}

// harmlessSGR reports whether the parameters of an SGR sequence only set
// colours and styles: digits and separators, and no concealed text (8).
// The colour numbers after 38, 48 and 58 are skipped, so 38;5;8 is a
// colour.
func harmlessSGR(params []byte) bool {
	for _, c := range params {
		if (c < '0' || c > '9') && c != ';' && c != ':' {
			return false
		}
	}
	fields := bytes.Split(params, []byte{';'})
	for i := 0; i < len(fields); i++ {
		head, _, sub := bytes.Cut(fields[i], []byte{':'})
		switch sgrNumber(head) {
		case 8:
			return false
		case 38, 48, 58:
			if sub || i+1 == len(fields) {
				continue // 38:5:n holds its colour in the field
			}
			switch sgrNumber(fields[i+1]) {
			case 5:
				i += 2
			case 2:
				i += 4
			}
		}
	}
	return true
}

// sgrNumber reads a parameter as a terminal does: empty is 0, leading
// zeros do not count. Large values are capped; none of them matters.
func sgrNumber(digits []byte) int {
	n := 0
	for _, c := range digits {
		n = min(n*10+int(c-'0'), 1000)
	}
	return n
}
