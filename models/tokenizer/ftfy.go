package tokenizer

import (
	"html"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/language"
	"golang.org/x/text/unicode/norm"
)

// fixText is the part of ftfy.fix_text (ftfy 6.1.1, default TextFixerConfig,
// as CLIPTokenizer calls it) that matters for prompts.
//
// Implemented, in ftfy's order (fix_and_explain, repeated until the text
// stops changing):
//   - unescape_html ("auto"): &amp; &eacute; &#x2019; ... for the names in the
//     HTML5 table that end in ';' plus their all-caps forms (&EACUTE;), and
//     numeric references; turned off for a line containing '<' and every
//     line after it.
//   - fix_encoding, narrowed (see fixEncoding): UTF-8 that was decoded as
//     Latin-1 or Windows-1252 ("cafÃ©", "donâ€™t", "ðŸ˜€").
//   - fix_c1_controls: U+0080..U+009F read as Windows-1252.
//   - fix_latin_ligatures: ﬁ -> fi, ĳ -> ij, ǆ -> dž, ...
//   - fix_character_width: fullwidth ASCII, halfwidth katakana and Hangul,
//     U+3000 -> their standard forms (ftfy's WIDTH_MAP, i.e. NFKC of
//     U+FF01..U+FFEF).
//   - uncurl_quotes: ʼ ‘ ’ ‚ ‛ -> ', “ ” „ ‟ -> ".
//   - fix_line_breaks: \r\n, \r, U+2028, U+2029, U+0085 -> \n.
//   - remove_terminal_escapes: ANSI "ESC [ digits/; letter" sequences.
//   - remove_control_chars: U+0000..U+0008, U+000B, U+000E..U+001F, U+007F,
//     U+206A..U+206F, U+FEFF, U+FFF9..U+FFFC.
//   - normalization "NFC" (norm.go).
//
// Not implemented:
//   - fix_encoding's full badness heuristic (ftfy.badness.is_bad) and its
//     other single-byte encodings (Windows-1250/1251/1253/1254/1257,
//     ISO-8859-2, MacRoman, cp437), restore_byte_a0 ("Ã " for "à"),
//     replace_lossy_sequences (mojibake containing "�") and the
//     utf-8-variants decoder (CESU-8, Java's C0 80).
//   - fix_surrogates: a Go string cannot hold UTF-16 surrogates; invalid
//     UTF-8 bytes become U+FFFD each (as Python's surrogateescape followed by
//     fix_surrogates would give).
//   - max_decode_length segmenting (1,000,000 characters per line).
func fixText(text string) string {
	if !utf8.ValidString(text) {
		text = string([]rune(text)) // each invalid byte becomes U+FFFD
	}
	unescape := true
	var out strings.Builder
	for segment := range strings.SplitAfterSeq(text, "\n") {
		if unescape && strings.Contains(segment, "<") {
			unescape = false // looks like HTML: keep entities, from here on
		}
		out.WriteString(fixSegment(segment, unescape))
	}
	return out.String()
}

// maxFixPasses bounds fixSegment's repetition. ftfy loops until the text
// stops changing; every fix here shrinks or normalises the text, so two or
// three passes are the norm, and the bound only guards against a loop.
const maxFixPasses = 32

// fixSegment is ftfy.fix_and_explain on one line.
func fixSegment(s string, unescape bool) string {
	for pass := 0; pass < maxFixPasses; pass++ {
		orig := s
		if unescape {
			s = unescapeHTML(s)
		}
		s = fixEncoding(s)
		s = mapRunes(s, fixC1Control)
		s = mapRunes(s, fixLatinLigature)
		s = mapRunes(s, fixCharacterWidth)
		s = mapRunes(s, uncurlQuote)
		s = lineBreaks.Replace(s)
		s = removeTerminalEscapes(s)
		s = mapRunes(s, removeControlChar)
		s = nfc(s)
		if s == orig {
			break
		}
	}
	return s
}

// mapRunes applies a str.translate-style table to s: f returns the
// replacement of r and true, or false to keep r.
func mapRunes(s string, f func(r rune) (string, bool)) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if rep, ok := f(r); ok {
			b.WriteString(rep)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// decodeCP1252 and encodeCP1252 are ftfy's "sloppy-windows-1252" codec:
// Windows-1252, with the five bytes it leaves undefined (0x81, 0x8D, 0x8F,
// 0x90, 0x9D) standing for the C1 controls of the same number, as in
// Latin-1.
func decodeCP1252(b byte) rune {
	if r := charmap.Windows1252.DecodeByte(b); r != utf8.RuneError {
		return r
	}
	return rune(b)
}

func encodeCP1252(r rune) (byte, bool) {
	if b, ok := charmap.Windows1252.EncodeRune(r); ok {
		return b, true
	}
	switch r {
	case 0x81, 0x8D, 0x8F, 0x90, 0x9D:
		return byte(r), true
	}
	return 0, false
}

// fixC1Control is ftfy.fixes.fix_c1_controls.
func fixC1Control(r rune) (string, bool) {
	if r >= 0x80 && r <= 0x9F {
		if w := decodeCP1252(byte(r)); w != r {
			return string(w), true
		}
	}
	return "", false
}

// latinLigatures is ftfy.chardata.LIGATURES.
var latinLigatures = map[rune]string{
	'Ĳ': "IJ", 'ĳ': "ij", 'ŉ': "ʼn",
	'Ǳ': "DZ", 'ǲ': "Dz", 'ǳ': "dz", 'Ǆ': "DŽ", 'ǅ': "Dž", 'ǆ': "dž",
	'Ǉ': "LJ", 'ǈ': "Lj", 'ǉ': "lj", 'Ǌ': "NJ", 'ǋ': "Nj", 'ǌ': "nj",
	'ﬀ': "ff", 'ﬁ': "fi", 'ﬂ': "fl", 'ﬃ': "ffi", 'ﬄ': "ffl", 'ﬅ': "ſt", 'ﬆ': "st",
}

func fixLatinLigature(r rune) (string, bool) {
	s, ok := latinLigatures[r]
	return s, ok
}

// fixCharacterWidth is ftfy.fixes.fix_character_width: its WIDTH_MAP maps
// U+3000 to a space and each halfwidth or fullwidth form U+FF01..U+FFEF to
// its NFKC form. (golang.org/x/text/width.Fold is a different mapping for
// 53 of them: it turns the halfwidth Hangul letters into compatibility jamo
// where NFKC gives conjoining jamo, and U+FFE3 into U+00AF where NFKC gives
// a space and U+0304.)
func fixCharacterWidth(r rune) (string, bool) {
	switch {
	case r == 0x3000:
		return " ", true
	case r >= 0xFF01 && r <= 0xFFEF:
		if s := norm.NFKC.String(string(r)); s != string(r) {
			return s, true
		}
	}
	return "", false
}

// uncurlQuote is ftfy.fixes.uncurl_quotes.
func uncurlQuote(r rune) (string, bool) {
	switch {
	case r == 0x02BC || r >= 0x2018 && r <= 0x201B:
		return "'", true
	case r >= 0x201C && r <= 0x201F:
		return `"`, true
	}
	return "", false
}

// removeControlChar is ftfy.fixes.remove_control_chars.
func removeControlChar(r rune) (string, bool) {
	switch {
	case r <= 0x08, r == 0x0B, r >= 0x0E && r <= 0x1F, r == 0x7F,
		r >= 0x206A && r <= 0x206F, r == 0xFEFF, r >= 0xFFF9 && r <= 0xFFFC:
		return "", true
	}
	return "", false
}

// lineBreaks is ftfy.fixes.fix_line_breaks.
var lineBreaks = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u2028", "\n", "\u2029", "\n", "\u0085", "\n")

// terminalEscape is ftfy.fixes.remove_terminal_escapes's pattern,
// \033\[((?:\d|;)*)([a-zA-Z]), \d being any decimal digit (Nd), as in a
// Python str pattern.
var terminalEscape = regexp.MustCompile(`\x1b\[[\p{Nd};]*[a-zA-Z]`)

// removeTerminalEscapes is ftfy.fixes.remove_terminal_escapes: it deletes
// every match of terminalEscape.
func removeTerminalEscapes(s string) string {
	return terminalEscape.ReplaceAllString(s, "")
}

// entity is ftfy's HTML entity pattern.
var entity = regexp.MustCompile(`&#?[0-9A-Za-z]{1,24};`)

// unescapeHTML is ftfy.fixes.unescape_html: every match of entity that is a
// known entity is replaced, others stay.
func unescapeHTML(s string) string {
	return entity.ReplaceAllStringFunc(s, func(ent string) string {
		if rep, ok := decodeEntity(ent); ok {
			return rep
		}
		return ent
	})
}

// decodeEntity is ftfy's _unescape_fixup for one matched "&...;".
func decodeEntity(ent string) (string, bool) {
	name := ent[1 : len(ent)-1]
	if strings.HasPrefix(name, "#") {
		return decodeCharRef(name[1:])
	}
	if v, ok := html5Entity(name); ok {
		return v, true
	}
	// All-caps forms of the all-lowercase entity names, when the all-caps
	// spelling means nothing to html.unescape (not even a prefix of it).
	lower := strings.ToLower(name)
	if strings.ToUpper(lower) != name || lower == name {
		return "", false
	}
	v, ok := html5Entity(lower)
	if !ok || html.UnescapeString(ent) != ent {
		return "", false
	}
	return cases.Upper(language.Und).String(v), true // Python's str.upper
}

// html5Entity looks up "&name;" in the HTML5 named character references
// (Python's html.entities.html5 with the ';', which is the table Go's html
// package carries too).
func html5Entity(name string) (string, bool) {
	ent := "&" + name + ";"
	v := html.UnescapeString(ent)
	if v == ent {
		return "", false
	}
	// html.UnescapeString also decodes a legacy entity that is only a
	// prefix ("&notit;" -> "¬it;"); such results keep the trailing ';'.
	// Only "&semi;" itself decodes to a ';'.
	if strings.HasSuffix(v, ";") && name != "semi" {
		return "", false
	}
	return v, true
}

// decodeCharRef decodes the body of "&#...;" as Python's html.unescape does,
// refusing (as ftfy does) anything that does not consume the ';', i.e. a
// body that is not all decimal digits or x/X plus hex digits, and a
// reference that decodes to ';'.
func decodeCharRef(body string) (string, bool) {
	digits, base := body, 10
	if strings.HasPrefix(body, "x") || strings.HasPrefix(body, "X") {
		digits, base = body[1:], 16
	}
	if digits == "" {
		return "", false
	}
	for _, c := range digits {
		if !(c >= '0' && c <= '9' || base == 16 && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')) {
			return "", false
		}
	}
	num, err := strconv.ParseUint(digits, base, 64)
	if err != nil || num > unicode.MaxRune {
		num = unicode.MaxRune + 1 // out of range
	}
	var out string
	switch {
	case num == 0:
		out = "\uFFFD"
	case num == 0x0D:
		out = "\r"
	case num >= 0x80 && num <= 0x9F:
		out = string(decodeCP1252(byte(num)))
	case num >= 0xD800 && num <= 0xDFFF, num > unicode.MaxRune:
		out = "\uFFFD"
	case num >= 0x01 && num <= 0x08, num == 0x0B, num >= 0x0E && num <= 0x1F, num == 0x7F,
		num >= 0xFDD0 && num <= 0xFDEF, num&0xFFFE == 0xFFFE:
		out = "" // html's _invalid_codepoints
	default:
		out = string(rune(num))
	}
	if strings.Contains(out, ";") {
		return "", false
	}
	return out, true
}
