package mixmaster

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

func TestSafeTerminalText(t *testing.T) {
	for _, tc := range []struct {
		name, in, plain, color string
	}{
		{"plain text", "make: ok\n", "make: ok\n", "make: ok\n"},
		{"tabs and newlines", "a\tb\n\nc", "a\tb\n\nc", "a\tb\n\nc"},
		{"utf-8", "été ✓ 😀\n", "été ✓ 😀\n", "été ✓ 😀\n"},
		{"sgr colour", "\x1b[1;31mFAIL\x1b[0m\n", "FAIL\n", "\x1b[1;31mFAIL\x1b[0m\n"},
		{"sgr 256 and true colour", "\x1b[38;5;8mx\x1b[48;2;1;2;3my\x1b[38:5:8mz", "xyz", "\x1b[38;5;8mx\x1b[48;2;1;2;3my\x1b[38:5:8mz\x1b[0m"},
		{"sgr reset", "\x1b[1m\x1b[mx", "x", "\x1b[1m\x1b[mx"},
		{"concealed text", "\x1b[8msecret\x1b[0m", "secret", "secret\x1b[0m"},
		{"concealed with leading zero", "\x1b[1;08ms", "s", "s"},
		{"private sgr-like", "\x1b[?1mx", "x", "x"},
		{"cursor movement", "ok\x1b[2A\x1b[2Khidden\x1b[H", "okhidden", "okhidden"},
		{"screen clear", "\x1b[2J\x1b[3Jtext", "text", "text"},
		{"title with bel", "\x1b]0;pwned\x07after", "after", "after"},
		{"title with st", "\x1b]2;pwned\x1b\\after", "after", "after"},
		{"hyperlink", "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", "click", "click"},
		{"unterminated osc ends at the line", "\x1b]0;title\nnext line\n", "\nnext line\n", "\nnext line\n"},
		{"dcs string", "\x1bPq#0;2;0;0;0\x1b\\x", "x", "x"},
		{"apc string", "\x1b_payload\x07x", "x", "x"},
		{"esc pair", "\x1bcreset\x1b7saved\x1b8", "resetsaved", "resetsaved"},
		{"esc with intermediates", "\x1b(Bascii\x1b#8", "ascii", "ascii"},
		{"lone esc", "a\x1b", "a", "a"},
		{"esc before a newline", "a\x1b\nb", "a\nb", "a\nb"},
		{"bell and backspace", "ab\b\bcd\x07", "abcd", "abcd"},
		{"other c0 and del", "a\x00b\x01c\x7fd\x0be\x0cf", "abcdef", "abcdef"},
		{"crlf", "one\r\ntwo\r\n", "one\ntwo\n", "one\ntwo\n"},
		{"overwrite by cr", "password: hunter2\rpassword: *******\n", "password: hunter2\npassword: *******\n", "password: hunter2\npassword: *******\n"},
		{"trailing cr", "progress 100%\r", "progress 100%\n", "progress 100%\n"},
		{"c1 csi", "a\u009b2Jb", "ab", "ab"},
		{"c1 osc", "a\u009d0;title\u009cb", "ab", "ab"},
		{"c1 csi colour kept as esc", "\u009b31mred", "red", "\x1b[31mred\x1b[0m"},
		{"other c1", "a\u0085b\u008ec", "abc", "abc"},
		{"raw 8-bit csi", "a\x9b2Jb", "a\uFFFD2Jb", "a\uFFFD2Jb"},
		{"invalid utf-8", "\xff\xfe ok", "\uFFFD\uFFFD ok", "\uFFFD\uFFFD ok"},
		{"truncated rune at end", "ok\xe2\x9c", "ok\uFFFD", "ok\uFFFD"},
		{"csi broken by a control", "\x1b[31\nred", "\nred", "\nred"},
		{"csi with a newline inside", "\x1b[3\n1mx", "\n1mx", "\n1mx"},
		{"unfinished csi at end", "x\x1b[31", "x", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(SafeTerminalText([]byte(tc.in), false)); got != tc.plain {
				t.Errorf("plain: %q -> %q, want %q", tc.in, got, tc.plain)
			}
			if got := string(SafeTerminalText([]byte(tc.in), true)); got != tc.color {
				t.Errorf("color: %q -> %q, want %q", tc.in, got, tc.color)
			}
		})
	}
}

// A sequence split between writes is recognised as a whole, as it would
// be in one write.
func TestTerminalWriterSplitWrites(t *testing.T) {
	in := []byte("a\x1b]0;title\x07b\x1b[1;31mc\r\nd\u009b2Je✓\r")
	for _, keep := range []bool{false, true} {
		want := SafeTerminalText(in, keep)
		for i := range in {
			var out bytes.Buffer
			w := NewTerminalWriter(&out, keep)
			for _, part := range [][]byte{in[:i], in[i:]} {
				if n, err := w.Write(part); n != len(part) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("keep %v, split at %d: %q, want %q", keep, i, out.Bytes(), want)
			}
		}
	}
}

func FuzzSafeTerminalText(f *testing.F) {
	for _, seed := range []string{
		"plain\n", "\x1b[1;31mred\x1b[0m", "\x1b]8;;http://x\x1b\\l\x1b]8;;\x07", "a\rb\r\n",
		"\u009b31m\u009d0;t\u009c", "\x1bP\x1b[8m\x1b\\", "\xff\xe2\x9c", "\x1b[38;5;8;8m",
	} {
		f.Add([]byte(seed), uint(3), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint, keep bool) {
		out := SafeTerminalText(in, keep)
		checkTerminalSafe(t, out, keep)

		// Any split gives the same text.
		i := int(split % uint(len(in)+1))
		var b bytes.Buffer
		w := NewTerminalWriter(&b, keep)
		w.Write(in[:i])
		w.Write(in[i:])
		w.Close()
		if !bytes.Equal(b.Bytes(), out) {
			t.Errorf("split at %d: %q, whole: %q", i, b.Bytes(), out)
		}
	})
}

// checkTerminalSafe fails t unless out is valid UTF-8 whose only controls
// are tabs, newlines and, with keep, SGR sequences that conceal nothing.
func checkTerminalSafe(t *testing.T, out []byte, keep bool) {
	t.Helper()
	if !utf8.Valid(out) {
		t.Fatalf("invalid UTF-8: %q", out)
	}
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRune(out[i:])
		switch {
		case r == 0x1b:
			end := bytes.IndexByte(out[i:], 'm')
			if !keep || end < 0 || out[i+1] != '[' || !harmlessSGR(out[i+2:i+end]) {
				t.Fatalf("escape at %d of %q", i, out)
			}
			n = end + 1
		case r == '\t' || r == '\n':
		case r < 0x20 || r >= 0x7f && r < 0xa0:
			t.Fatalf("control %U at %d of %q", r, i, out)
		}
		i += n
	}
}
