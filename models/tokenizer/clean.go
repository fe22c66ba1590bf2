package tokenizer

import (
	"strings"
	"unicode"
)

// cleanText is the text preparation of CLIPTokenizer._tokenize with ftfy
// installed: whitespace_clean(ftfy.fix_text(text)).lower().
func cleanText(text string) string {
	return pyLower(whitespaceClean(fixText(text)))
}

// whitespaceClean is transformers' whitespace_clean: runs of whitespace
// (the regex module's \s, i.e. White_Space) become one space, then the ends
// are stripped.
func whitespaceClean(s string) string {
	return strings.Join(strings.FieldsFunc(s, isSpace), " ")
}

// pyLower is Python's str.lower: the simple lower-case mapping plus its two
// context-free differences, U+0130 (İ) -> "i̇" and the final sigma rule
// (Σ at the end of a word becomes ς). golang.org/x/text/cases.Lower agrees
// on every character but looks at most 30 case-ignorable characters past a
// Σ, where Python looks at all of them ("AΣ" + 31 "'" + "B" gives ς there,
// σ in Python).
func pyLower(s string) string {
	if isASCII(s) {
		return strings.ToLower(s)
	}
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range rs {
		switch r {
		case 'İ':
			b.WriteString("i\u0307")
		case 'Σ':
			if finalSigma(rs, i) {
				b.WriteRune('ς')
			} else {
				b.WriteRune('σ')
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma is CPython's handle_capital_sigma: Σ at i is final when it
// follows a cased letter and is not followed by one, skipping
// case-ignorable characters both ways.
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && isCaseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !isCased(rs[j]) {
		return false
	}
	k := i + 1
	for k < len(rs) && isCaseIgnorable(rs[k]) {
		k++
	}
	return k == len(rs) || !isCased(rs[k])
}

// isCased is the Unicode Cased property.
func isCased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// isCaseIgnorable is the Unicode Case_Ignorable property: Mn, Me, Cf, Lm,
// Sk, and the Word_Break MidLetter, MidNumLet and Single_Quote characters.
func isCaseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}
