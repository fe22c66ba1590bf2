package tokenizer

import (
	"regexp"
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

// wordPattern is the CLIPTokenizer pattern that splits cleaned text into
// the words BPE works on, with re.IGNORECASE (which only the literal
// alternatives are affected by: the others are case-free classes; "'S" and,
// as in the regex module, "'ſ" match "'s"); \s is White_Space (isSpace).
// Alternatives are tried in order at each position, leftmost first, and
// the spaces between matches are skipped:
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// The last alternative is greedy: in "!!<|ENDOFTEXT|>" (not split out as a
// special token, since that split is case-sensitive) "!!<|" is one word.
var wordPattern = regexp.MustCompile(`(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)|\p{L}+|\p{N}|[^` + whiteSpace + `\p{L}\p{N}]+`)

// whiteSpace is the Unicode White_Space property as a character class body.
const whiteSpace = `\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

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
	symbols := strings.Split(word, "") // its characters
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
