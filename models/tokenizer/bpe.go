package tokenizer

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Byte-level BPE as CLIP does it.
//
// transformers: models/clip/tokenization_clip.py, bytes_to_unicode,
// CLIPTokenizer.bpe and CLIPTokenizer._tokenize (same as openai/CLIP
// clip/simple_tokenizer.py).

// endOfWord marks the last symbol of a word.
const endOfWord = "</w>"

// byteSymbols maps each UTF-8 byte to the printable character that stands for
// it in vocab.json and merges.txt (bytes_to_unicode): the printable Latin-1
// bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves, the other 68
// bytes (controls, space, DEL, NBSP, soft hyphen) for U+0100, U+0101, ... in
// byte order.
var byteSymbols = func() (t [256]string) {
	next := rune(256)
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			t[b] = string(rune(b))
		} else {
			t[b] = string(next)
			next++
		}
	}
	return t
}()

// preTokenize splits cleaned text into the words BPE works on, as the
// CLIPTokenizer pattern does with re.IGNORECASE (alternatives tried in order
// at each position, leftmost first, spaces between matches skipped):
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// The last alternative is greedy: in "!!<|ENDOFTEXT|>" (not split out as a
// special token, since that split is case-sensitive) "!!<|" is one word.
func preTokenize(text string, emit func(word string)) {
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if n := matchLiteral(text[i:]); n > 0 {
			emit(text[i : i+n])
			i += n
			continue
		}
		switch {
		case unicode.IsLetter(r):
			j := runEnd(text, i+size, unicode.IsLetter)
			emit(text[i:j])
			i = j
		case unicode.IsNumber(r):
			emit(text[i : i+size])
			i += size
		case isSpace(r):
			i += size
		default:
			j := runEnd(text, i+size, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) && !isSpace(r) })
			emit(text[i:j])
			i = j
		}
	}
}

// runEnd is where the run of characters of text from i on for which in
// holds ends.
func runEnd(text string, i int, in func(rune) bool) int {
	for i < len(text) {
		r, size := utf8.DecodeRuneInString(text[i:])
		if !in(r) {
			break
		}
		i += size
	}
	return i
}

// literalAlternatives are the pattern's fixed-string alternatives, in order.
var literalAlternatives = []string{
	"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
}

// matchLiteral returns the byte length of the first literal alternative that
// matches at the start of s (case-insensitively), or 0.
func matchLiteral(s string) int {
	if s == "" || (s[0] != '<' && s[0] != '\'') {
		return 0
	}
	for _, lit := range literalAlternatives {
		if n := foldPrefix(s, lit); n > 0 {
			return n
		}
	}
	return 0
}

// foldPrefix reports the byte length of the prefix of s that equals the
// ASCII pattern lit under simple case folding (so "'S" and, as in the regex
// module, "'ſ" match "'s"), or 0.
func foldPrefix(s, lit string) int {
	i := 0
	for range len(lit) { // lit is ASCII: one character per byte
		if i >= len(s) {
			return 0
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	if !strings.EqualFold(s[:i], lit) {
		return 0
	}
	return i
}

// isSpace is \s of the regex module for str patterns: the Unicode
// White_Space property.
func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || r >= '\t' && r <= '\r'
	}
	return unicode.Is(unicode.White_Space, r)
}

// bpeResult is the BPE of one word: its symbols and their ids.
type bpeResult struct {
	tokens []string
	ids    []int64
}

// bpeModel holds the merge ranks and a cache of encoded words.
type bpeModel struct {
	vocab map[string]int64
	ranks map[mergePair]int
	unkID int64

	mu    sync.Mutex
	cache map[string]bpeResult
}

// maxCacheEntries bounds the word cache; words past it are still encoded,
// just not remembered.
const maxCacheEntries = 1 << 16

func newBPEModel(vocab map[string]int64, merges []mergePair, unkID int64) *bpeModel {
	m := &bpeModel{
		vocab: vocab,
		ranks: make(map[mergePair]int, len(merges)),
		unkID: unkID,
		cache: make(map[string]bpeResult),
	}
	for i, p := range merges {
		m.ranks[p] = i // a repeated merge takes its last rank, as in a Python dict
	}
	// CLIPTokenizer seeds its cache so that these two words are never split.
	for _, special := range []string{"<|startoftext|>", "<|endoftext|>"} {
		m.cache[special] = m.lookup([]string{special})
	}
	return m
}

// encodeWord returns the BPE symbols and ids of one pre-tokenized word.
func (m *bpeModel) encodeWord(word string) bpeResult {
	// Each UTF-8 byte becomes its printable stand-in.
	var sb strings.Builder
	for i := 0; i < len(word); i++ {
		sb.WriteString(byteSymbols[word[i]])
	}
	key := sb.String()

	m.mu.Lock()
	res, ok := m.cache[key]
	m.mu.Unlock()
	if ok {
		return res
	}
	res = m.lookup(m.merge(key))
	m.mu.Lock()
	if len(m.cache) < maxCacheEntries {
		m.cache[key] = res
	}
	m.mu.Unlock()
	return res
}

// lookup maps symbols to ids, unknown ones to the unk id.
func (m *bpeModel) lookup(symbols []string) bpeResult {
	ids := make([]int64, len(symbols))
	for i, s := range symbols {
		id, ok := m.vocab[s]
		if !ok {
			id = m.unkID
		}
		ids[i] = id
	}
	return bpeResult{tokens: symbols, ids: ids}
}

// merge runs BPE on one byte-encoded word: start from its characters, the
// last one carrying "</w>", and repeatedly merge every occurrence (left to
// right, non-overlapping) of the adjacent pair with the lowest merge rank,
// until no adjacent pair has a rank.
func (m *bpeModel) merge(word string) []string {
	symbols := make([]string, 0, utf8.RuneCountInString(word))
	for i := 0; i < len(word); {
		_, size := utf8.DecodeRuneInString(word[i:])
		symbols = append(symbols, word[i:i+size])
		i += size
	}
	if len(symbols) == 0 {
		return nil
	}
	symbols[len(symbols)-1] += endOfWord
	for len(symbols) > 1 {
		best, bestRank := -1, 0
		for i := 0; i+1 < len(symbols); i++ {
			if r, ok := m.ranks[mergePair{symbols[i], symbols[i+1]}]; ok && (best < 0 || r < bestRank) {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		a, b := symbols[best], symbols[best+1]
		out := symbols[:best] // everything before the first occurrence stays
		for i := best; i < len(symbols); {
			if i+1 < len(symbols) && symbols[i] == a && symbols[i+1] == b {
				out = append(out, a+b)
				i += 2
			} else {
				out = append(out, symbols[i])
				i++
			}
		}
		symbols = out
	}
	return symbols
}
