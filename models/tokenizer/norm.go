package tokenizer

import (
	"sort"
	"sync"
	"unicode/utf8"
)

//go:generate go run gen_tables.go -ucd /usr/share/unicode -o tables.go

// Unicode Normalization Form C (UAX #15), which ftfy applies as its last
// step (TextFixerConfig.normalization = "NFC"). The standard library has no
// normaliser and golang.org/x/text is not a dependency, so this is a small
// direct implementation over the tables in tables.go: full canonical
// decomposition, canonical ordering of combining marks, canonical
// composition. Hangul syllables are handled arithmetically.

// Hangul constants (Unicode §3.12).
const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

type normData struct {
	decomp  map[rune][2]rune // second = 0 for singletons
	compose map[[2]rune]rune // primary composites
}

var normOnce = sync.OnceValue(func() *normData {
	d := &normData{
		decomp:  make(map[rune][2]rune, len(canonicalDecompositions)),
		compose: make(map[[2]rune]rune, len(canonicalDecompositions)/2),
	}
	excluded := make(map[rune]bool, len(compositionExclusions))
	for _, r := range compositionExclusions {
		excluded[r] = true
	}
	for _, e := range canonicalDecompositions {
		d.decomp[e[0]] = [2]rune{e[1], e[2]}
		// Full_Composition_Exclusion = the exclusion list + singletons +
		// non-starter decompositions.
		if e[2] == 0 || excluded[e[0]] || combiningClass(e[0]) != 0 || combiningClass(e[1]) != 0 {
			continue
		}
		d.compose[[2]rune{e[1], e[2]}] = e[0]
	}
	return d
})

// combiningClass returns the canonical combining class of r.
func combiningClass(r rune) uint8 {
	if r < 0x300 {
		return 0
	}
	i := sort.Search(len(combiningClassRanges), func(i int) bool { return combiningClassRanges[i].hi >= r })
	if i < len(combiningClassRanges) && combiningClassRanges[i].lo <= r {
		return combiningClassRanges[i].class
	}
	return 0
}

// nfc returns s in Normalization Form C.
func nfc(s string) string {
	// Fast path: nothing below U+0300 decomposes or composes with anything
	// else below U+0300, so such text is already NFC.
	quick := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r >= 0x300 {
			quick = false
			break
		}
		i += n
	}
	if quick {
		return s
	}
	d := normOnce()

	// 1. Full canonical decomposition.
	buf := make([]rune, 0, len(s))
	for _, r := range s {
		buf = d.decompose(buf, r)
	}
	// 2. Canonical ordering: stable sort of each run of non-starters by class.
	for i := 0; i < len(buf); {
		if combiningClass(buf[i]) == 0 {
			i++
			continue
		}
		j := i
		for j < len(buf) && combiningClass(buf[j]) != 0 {
			j++
		}
		run := buf[i:j]
		sort.SliceStable(run, func(a, b int) bool { return combiningClass(run[a]) < combiningClass(run[b]) })
		i = j
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
				if p, ok := d.composePair(out[starter], c); ok {
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

func (d *normData) decompose(dst []rune, r rune) []rune {
	if r >= hangulSBase && r < hangulSBase+hangulSCount {
		si := r - hangulSBase
		dst = append(dst, hangulLBase+si/hangulNCount, hangulVBase+(si%hangulNCount)/hangulTCount)
		if t := si % hangulTCount; t != 0 {
			dst = append(dst, hangulTBase+t)
		}
		return dst
	}
	m, ok := d.decomp[r]
	if !ok {
		return append(dst, r)
	}
	dst = d.decompose(dst, m[0])
	if m[1] != 0 {
		dst = d.decompose(dst, m[1])
	}
	return dst
}

func (d *normData) composePair(a, b rune) (rune, bool) {
	// Hangul L+V -> LV, LV+T -> LVT.
	if a >= hangulLBase && a < hangulLBase+hangulLCount && b >= hangulVBase && b < hangulVBase+hangulVCount {
		return hangulSBase + ((a-hangulLBase)*hangulVCount+(b-hangulVBase))*hangulTCount, true
	}
	if a >= hangulSBase && a < hangulSBase+hangulSCount && (a-hangulSBase)%hangulTCount == 0 &&
		b > hangulTBase && b < hangulTBase+hangulTCount {
		return a + (b - hangulTBase), true
	}
	p, ok := d.compose[[2]rune{a, b}]
	return p, ok
}
