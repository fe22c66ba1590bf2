// Package tokenizer is the CLIP byte-level BPE tokenizer of Stable Diffusion
// checkpoints, reading a diffusers checkpoint's tokenizer/ folder and turning
// prompts into the fixed-length id rows the text encoder takes.
//
// It reproduces the slow transformers CLIPTokenizer with ftfy installed (the
// tokenizer the diffusers pipelines and TokenFlow use): special tokens are
// split out of the raw prompt first; every other piece is cleaned (a subset
// of ftfy.fix_text, whitespace collapsed, lower-cased), split with CLIP's
// pattern, byte-encoded and merged by BPE rank. See ftfy.go for which ftfy
// fixes are implemented.
package tokenizer

import "sort"

// Tokenizer encodes prompts. It is safe for concurrent use.
//
// transformers: models/clip/tokenization_clip.py, CLIPTokenizer (slow),
// with PreTrainedTokenizer.tokenize's special-token splitting and
// __call__(padding="max_length", max_length=model_max_length,
// truncation=True).
type Tokenizer struct {
	bpe       *bpeModel
	specials  []string         // longest first, for splitting
	specialID map[string]int64 // id of each special token
	bosID     int64
	eosID     int64
	padID     int64
	unkID     int64
	maxLength int
}

// Load reads the tokenizer of a diffusers checkpoint from dir (its
// tokenizer/ folder): vocab.json and merges.txt, and when present
// special_tokens_map.json and tokenizer_config.json for the bos, eos, unk,
// pad (and additional) special tokens and model_max_length. Errors name the
// file and the field.
func Load(dir string) (*Tokenizer, error) {
	tf, err := readFiles(dir)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{
		specialID: map[string]int64{},
		bosID:     tf.vocab[tf.bos.content],
		eosID:     tf.vocab[tf.eos.content],
		padID:     tf.vocab[tf.pad.content],
		unkID:     tf.vocab[tf.unk.content],
		maxLength: tf.maxLength,
	}
	for _, st := range tf.specials() {
		if _, dup := t.specialID[st.content]; !dup {
			t.specialID[st.content] = tf.vocab[st.content]
			t.specials = append(t.specials, st.content)
		}
	}
	sort.SliceStable(t.specials, func(i, j int) bool { return len(t.specials[i]) > len(t.specials[j]) })
	t.bpe = newBPEModel(tf.vocab, tf.merges, t.unkID)
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
	ids = make([]int64, t.maxLength)
	truncated = t.encodeInto(ids, text)
	return ids, truncated
}

// EncodeBatch encodes each text as Encode does into one row-major
// [len(texts), MaxLength] slice; truncated[i] is Encode's flag for texts[i].
func (t *Tokenizer) EncodeBatch(texts []string) (ids []int64, truncated []bool) {
	ids = make([]int64, len(texts)*t.maxLength)
	truncated = make([]bool, len(texts))
	for i, text := range texts {
		truncated[i] = t.encodeInto(ids[i*t.maxLength:(i+1)*t.maxLength], text)
	}
	return ids, truncated
}

func (t *Tokenizer) encodeInto(row []int64, text string) bool {
	_, toks := t.tokenize(text)
	limit := t.maxLength - 2
	truncated := len(toks) > limit
	if truncated {
		toks = toks[:limit]
	}
	row[0] = t.bosID
	n := 1 + copy(row[1:], toks)
	row[n] = t.eosID
	for i := n + 1; i < len(row); i++ {
		row[i] = t.padID
	}
	return truncated
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
		preTokenize(cleanText(piece), func(word string) {
			res := t.bpe.encodeWord(word)
			symbols = append(symbols, res.tokens...)
			ids = append(ids, res.ids...)
		})
	})
	return symbols, ids
}

// splitSpecial cuts text at every occurrence of a special token (exact,
// case-sensitive, longest match at the leftmost position, as transformers'
// Trie.split) and calls emit for each piece in order.
func (t *Tokenizer) splitSpecial(text string, emit func(piece string, special bool)) {
	start := 0
	for i := 0; i < len(text); {
		matched := ""
		for _, sp := range t.specials {
			if len(text)-i >= len(sp) && text[i:i+len(sp)] == sp {
				matched = sp
				break // specials are sorted longest first
			}
		}
		if matched == "" {
			i++
			continue
		}
		if start < i {
			emit(text[start:i], false)
		}
		emit(matched, true)
		i += len(matched)
		start = i
	}
	if start < len(text) {
		emit(text[start:], false)
	}
}
