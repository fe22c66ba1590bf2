package tokenizer

import (
	"regexp"
	"slices"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// fixEncoding is a narrowed ftfy.fix_encoding: it undoes the most common
// mojibake, UTF-8 bytes that were decoded as Latin-1 or Windows-1252, and
// repeats until nothing changes (double encodings).
//
// ftfy decides whether text "looks bad" with a large hand-tuned heuristic
// (ftfy.badness.is_bad) and then tries ten single-byte encodings. Here the
// evidence is narrower and explicit: the text must contain a mojibake
// sequence (mojibake) of one of these shapes, written in Latin-1 /
// Windows-1252 characters:
//
//	Â or Ã + 1 continuation        U+0080..U+00FF  ("cafÃ©" -> "café")
//	â..é or ï + 2 continuations    U+2000..U+9FFF, U+F000..U+FFFF
//	                               ("â€™" -> "’", "æ—¥" -> "日", "ï»¿" -> BOM)
//	ð + 3 continuations            U+10000..U+3FFFF ("ðŸ˜€" -> "😀")
//
// where a continuation is a character standing for a byte 0x80..0xBF. Then,
// as ftfy does: if the whole text re-encodes (Latin-1 first, then
// Windows-1252) to valid UTF-8, that decoding replaces it; otherwise each
// mojibake sequence is decoded on its own (decode_inconsistent_utf8).
// Accented capitals before punctuation ("MARQUÉ…", "AHÅ™") are not
// sequences of these shapes and stay as they are, as in ftfy.
func fixEncoding(s string) string {
	for {
		fixed := fixEncodingStep(s)
		if fixed == s {
			return s
		}
		s = fixed
	}
}

func fixEncodingStep(s string) string {
	if isASCII(s) || !slices.ContainsFunc(mojibake.FindAllString(s, -1), func(seq string) bool { return decodeSequence(seq) != "" }) {
		return s
	}
	for _, enc := range []func(rune) (byte, bool){charmap.ISO8859_1.EncodeRune, encodeCP1252} {
		if b, ok := encodeSingleByte(s, enc); ok && utf8.Valid(b) {
			return string(b)
		}
	}
	// decode_inconsistent_utf8: fix the sequences in isolation.
	return mojibake.ReplaceAllStringFunc(s, func(seq string) string {
		if dec := decodeSequence(seq); dec != "" && len(seq) < len(s) {
			return dec
		}
		return seq
	})
}

// decodeSequence is the character a mojibake sequence stands for, or ""
// when its bytes are not the UTF-8 of one (overlong, too large, U+FFFD).
func decodeSequence(seq string) string {
	b, _ := encodeSingleByte(seq, mojibakeByte)
	if r, size := utf8.DecodeRune(b); r == utf8.RuneError || size != len(b) {
		return ""
	}
	return string(b)
}

// mojibake matches the sequences of fixEncoding's shapes: a lead and its
// continuations, characters standing for a byte 0x80..0xBF in Latin-1 or
// Windows-1252.
var mojibake = regexp.MustCompile(`[ÂÃ]` + continuation + `|[â-éï]` + continuation + `{2}|ð` + continuation + `{3}`)

const continuation = `[\x{80}-\x{BF}€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]`

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// encodeSingleByte encodes s with enc (Latin-1, or ftfy's
// sloppy-windows-1252), reporting whether every character fits.
func encodeSingleByte(s string, enc func(rune) (byte, bool)) ([]byte, bool) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		c, ok := enc(r)
		if !ok {
			return nil, false
		}
		b = append(b, c)
	}
	return b, true
}

// mojibakeByte is the byte r stands for in either single-byte encoding.
func mojibakeByte(r rune) (byte, bool) {
	if r <= 0xFF {
		return byte(r), true
	}
	return encodeCP1252(r)
}
