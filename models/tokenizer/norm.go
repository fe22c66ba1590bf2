package tokenizer

import (
	"slices"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// cgj is U+034F COMBINING GRAPHEME JOINER.
const cgj = "\u034f"

// nfc returns s in Normalization Form C, as Python's
// unicodedata.normalize("NFC", s) does; ftfy applies it as its last step
// (TextFixerConfig.normalization = "NFC").
//
// golang.org/x/text/unicode/norm does the work with one difference: it
// produces the Stream-Safe Text Format (UAX #15 §13), inserting a CGJ after
// every 30 non-starters in a row, where Python reorders and composes the
// whole run. Text with such a run (it takes more than 30 combining marks on
// one character) goes through nfcUnbounded instead.
func nfc(s string) string {
	out := norm.NFC.String(s)
	if !strings.Contains(out, cgj) || strings.Count(out, cgj) == strings.Count(s, cgj) {
		return out
	}
	return nfcUnbounded(s)
}

// nfcUnbounded is the NFC algorithm of UAX #15 without a limit on runs of
// non-starters, over the character data of golang.org/x/text/unicode/norm.
func nfcUnbounded(s string) string {
	// 1. Full canonical decomposition, one character at a time (a single
	// character decomposes to far fewer than 30 non-starters, so norm
	// inserts nothing here).
	var buf []rune
	for _, r := range s {
		buf = append(buf, []rune(norm.NFD.String(string(r)))...)
	}
	// 2. Canonical ordering: a stable sort of each run of non-starters by
	// combining class.
	for i := 0; i < len(buf); {
		j := i
		for j < len(buf) && combiningClass(buf[j]) != 0 {
			j++
		}
		slices.SortStableFunc(buf[i:j], func(a, b rune) int { return int(combiningClass(a)) - int(combiningClass(b)) })
		i = j + 1
	}
	// 3. Canonical composition.
	out := buf[:0]
	starter := -1     // index in out of the last starter, -1 if none
	var lastClass int // class of the last character appended after starter
	for _, c := range buf {
		cc := int(combiningClass(c))
		if starter >= 0 {
			// c is blocked from the starter when a character between them
			// has class 0 or a class >= c's.
			blocked := len(out)-1 != starter && (lastClass == 0 || lastClass >= cc)
			if !blocked {
				if p, ok := composePair(out[starter], c); ok {
					out[starter] = p
					continue
				}
			}
		}
		if cc == 0 {
			starter = len(out)
			lastClass = 0
		} else {
			lastClass = cc
		}
		out = append(out, c)
	}
	return string(out)
}

func combiningClass(r rune) uint8 {
	return norm.NFD.PropertiesString(string(r)).CCC()
}

// composePair returns the primary composite of starter and c, if there is
// one. In nfcUnbounded the canonical decomposition of starter followed by c
// is in canonical order (starter was composed from the characters before
// c), so NFC of the two is that composite when it exists, and otherwise
// leaves two characters.
func composePair(starter, c rune) (rune, bool) {
	rs := []rune(norm.NFC.String(string([]rune{starter, c})))
	if len(rs) != 1 {
		return 0, false
	}
	return rs[0], true
}
