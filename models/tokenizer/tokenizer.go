// Package tokenizer is the CLIP byte-level BPE tokenizer of Stable Diffusion
// checkpoints, built from a diffusers checkpoint's tokenizer/ folder (Load)
// or from the same files' contents (New), turning prompts into the
// fixed-length id rows the text encoder takes.
//
// It reproduces the slow transformers CLIPTokenizer with ftfy installed (the
// tokenizer the diffusers pipelines and TokenFlow use): special tokens are
// split out of the raw prompt first; every other piece is cleaned (a subset
// of ftfy.fix_text, whitespace collapsed, lower-cased), split with CLIP's
// pattern, byte-encoded and merged by BPE rank. See ftfy.go for which ftfy
// fixes are implemented.
//
// The Unicode data comes from the standard library (letters, numbers,
// lower-casing) and golang.org/x/text (normalisation, upper-casing), whose
// tables follow the Go version: Unicode 15.0.0 up to Go 1.26, as in the
// standard library there, and 17.0.0 from Go 1.27 on.
package tokenizer

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Tokenizer encodes prompts. It is safe for concurrent use.
//
// transformers: models/clip/tokenization_clip.py, CLIPTokenizer (slow),
// with PreTrainedTokenizer.tokenize's special-token splitting and
// __call__(padding="max_length", max_length=model_max_length,
// truncation=True).
type Tokenizer struct {
	bpe       *bpeModel
	special   *regexp.Regexp   // the special tokens, longest first
	specialID map[string]int64 // id of each special token
	bosID     int64
	eosID     int64
	padID     int64
	unkID     int64
	maxLength int
}

// Options are the settings a checkpoint's tokenizer_config.json and
// special_tokens_map.json hold. The zero value is CLIPTokenizer's defaults,
// which are also what SD 1.x checkpoints say; SD 2.x checkpoints pad with
// "!" instead: Options{Pad: "!"}.
type Options struct {
	// The special tokens; "" stands for CLIPTokenizer's default,
	// "<|startoftext|>" for BOS and "<|endoftext|>" for the others. Every
	// special token must be in the vocabulary, and is split out of prompts
	// as a whole before any cleanup (so with Pad "!", each "!" of a prompt
	// is the pad token).
	BOS, EOS, Unk, Pad string
	// Additional are further special tokens (additional_special_tokens);
	// "" entries are skipped.
	Additional []string
	// MaxLength is the length of every encoded row (model_max_length),
	// 2..65536; 0 stands for 77.
	MaxLength int
}

// A FileError is a problem with the content of vocab.json or merges.txt.
type FileError struct {
	File string // "vocab.json" or "merges.txt" from New, its path from Load
	Line int    // 1-based line of merges.txt, 0 when not about one line
	Err  error
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// A TokenError reports a special token that is not in the vocabulary.
type TokenError struct {
	Field string // "bos_token", "eos_token", "unk_token", "pad_token" or "additional_special_tokens[i]"
	Token string
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("%s %q is not in %s", e.Field, e.Token, vocabFile)
}

func additionalField(i int) string { return fmt.Sprintf("additional_special_tokens[%d]", i) }

// New builds a tokenizer from the contents of vocab.json and merges.txt and
// the options of tokenizer_config.json and special_tokens_map.json. Errors
// are a *FileError for the file contents, a *TokenError for a special token
// the vocabulary lacks.
func New(vocab, merges []byte, opts Options) (*Tokenizer, error) {
	v, err := parseVocab(vocab)
	if err != nil {
		return nil, err
	}
	m, err := parseMerges(merges)
	if err != nil {
		return nil, err
	}
	maxLength := cmp.Or(opts.MaxLength, defaultMaxLength)
	if maxLength < 2 || maxLength > maxMaxLength {
		return nil, fmt.Errorf("tokenizer: max length %d is not a usable sequence length (2..%d)", opts.MaxLength, maxMaxLength)
	}
	specials := []struct{ field, token string }{
		{"bos_token", cmp.Or(opts.BOS, defaultBOS)},
		{"eos_token", cmp.Or(opts.EOS, defaultEOS)},
		{"unk_token", cmp.Or(opts.Unk, defaultUnk)},
		{"pad_token", cmp.Or(opts.Pad, defaultPad)},
	}
	for i, tok := range opts.Additional {
		if tok != "" {
			specials = append(specials, struct{ field, token string }{additionalField(i), tok})
		}
	}
	t := &Tokenizer{specialID: map[string]int64{}, maxLength: maxLength}
	for _, st := range specials {
		id, ok := v[st.token]
		if !ok {
			return nil, &TokenError{Field: st.field, Token: st.token}
		}
		t.specialID[st.token] = id
	}
	t.bosID, t.eosID, t.unkID, t.padID = v[specials[0].token], v[specials[1].token], v[specials[2].token], v[specials[3].token]
	// Longest first: at the leftmost match, the first alternative that
	// matches is the longest token.
	tokens := slices.SortedStableFunc(maps.Keys(t.specialID), func(a, b string) int { return len(b) - len(a) })
	for i, tok := range tokens {
		tokens[i] = regexp.QuoteMeta(tok)
	}
	t.special = regexp.MustCompile(strings.Join(tokens, "|"))
	t.bpe = newBPEModel(v, m, t.unkID)
	return t, nil
}

// BOSID is the id of the beginning-of-sequence token (<|startoftext|>).
func (t *Tokenizer) BOSID() int64 { return t.bosID }

// EOSID is the id of the end-of-sequence token (<|endoftext|>).
func (t *Tokenizer) EOSID() int64 { return t.eosID }

// PadID is the id rows are padded with: 49407 (<|endoftext|>) for SD 1.x,
// 0 ("!") for SD 2.x.
func (t *Tokenizer) PadID() int64 { return t.padID }

// UnkID is the id of the unknown token.
func (t *Tokenizer) UnkID() int64 { return t.unkID }

// MaxLength is the length of every encoded row (model_max_length, 77 for
// CLIP): BOS, at most MaxLength-2 prompt tokens, EOS, padding.
func (t *Tokenizer) MaxLength() int { return t.maxLength }

// Encode returns the MaxLength ids of text: [BOS] + its first MaxLength-2
// token ids + [EOS], padded with PadID. truncated reports that the prompt had
// more than MaxLength-2 tokens and lost the rest.
func (t *Tokenizer) Encode(text string) (ids []int64, truncated bool) {
	_, toks := t.tokenize(text)
	ids = make([]int64, t.maxLength)
	ids[0] = t.bosID
	n := 1 + copy(ids[1:t.maxLength-1], toks) // at most MaxLength-2 tokens
	ids[n] = t.eosID
	for i := n + 1; i < len(ids); i++ {
		ids[i] = t.padID
	}
	return ids, len(toks) > t.maxLength-2
}

// Tokenize returns the token ids of text without BOS/EOS, truncation or
// padding (len(Tokenize(p)) > MaxLength()-2 is what makes Encode truncate).
func (t *Tokenizer) Tokenize(text string) []int64 {
	_, ids := t.tokenize(text)
	return ids
}

// tokenize returns the BPE symbols of text and their ids.
func (t *Tokenizer) tokenize(text string) (symbols []string, ids []int64) {
	t.splitSpecial(text, func(piece string, special bool) {
		if special {
			symbols = append(symbols, piece)
			ids = append(ids, t.specialID[piece])
			return
		}
		for _, word := range wordPattern.FindAllString(cleanText(piece), -1) {
			res := t.bpe.encodeWord(word)
			symbols = append(symbols, res.tokens...)
			ids = append(ids, res.ids...)
		}
	})
	return symbols, ids
}

// splitSpecial cuts text at every occurrence of a special token (exact,
// case-sensitive, longest match at the leftmost position, as transformers'
// Trie.split) and calls emit for each piece in order.
func (t *Tokenizer) splitSpecial(text string, emit func(piece string, special bool)) {
	start := 0
	for _, m := range t.special.FindAllStringIndex(text, -1) {
		if start < m[0] {
			emit(text[start:m[0]], false)
		}
		emit(text[m[0]:m[1]], true)
		start = m[1]
	}
	if start < len(text) {
		emit(text[start:], false)
	}
}
