package tokenizer

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// The seed corpora are in testdata/fuzz/<FuzzName>/; plain `go test` runs
// them. To fuzz: go test -run XXX -fuzz FuzzEncode -parallel 1 ./models/tokenizer/

// checkRow checks the properties every Encode row has: MaxLength ids, BOS,
// the first MaxLength-2 ids of Tokenize, EOS, then padding; truncated exactly
// when Tokenize gave more than MaxLength-2 ids; every id one of the
// vocabulary's.
func checkRow(t *testing.T, tok *Tokenizer, ids map[int64]bool, text string) {
	t.Helper()
	row, truncated := tok.Encode(text)
	toks := tok.Tokenize(text)
	if len(row) != tok.MaxLength() {
		t.Fatalf("Encode(%+q): %d ids, want %d", text, len(row), tok.MaxLength())
	}
	limit := tok.MaxLength() - 2
	if truncated != (len(toks) > limit) {
		t.Errorf("Encode(%+q) truncated = %v with %d tokens (limit %d)", text, truncated, len(toks), limit)
	}
	n := min(len(toks), limit)
	want := append([]int64{tok.BOSID()}, toks[:n]...)
	want = append(want, tok.EOSID())
	for len(want) < tok.MaxLength() {
		want = append(want, tok.PadID())
	}
	if d := diff(want, row); d != "" {
		t.Errorf("Encode(%+q) is not BOS + Tokenize + EOS + padding: %s", text, d)
	}
	for i, id := range row {
		if !ids[id] {
			t.Errorf("Encode(%+q)[%d] = %d, not an id of the vocabulary", text, i, id)
		}
	}
	// The word cache must not change results: a second call.
	again, _ := tok.Encode(text)
	if d := diff(row, again); d != "" {
		t.Errorf("second Encode(%+q) differs: %s", text, d)
	}
}

// vocabIDs is the set of ids of a vocabulary.
func vocabIDs(vocab map[string]int64) map[int64]bool {
	ids := make(map[int64]bool, len(vocab))
	for _, id := range vocab {
		ids[id] = true
	}
	return ids
}

// FuzzVocab parses arbitrary vocab.json contents and builds a tokenizer on
// the ones that parse.
func FuzzVocab(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		vocab, err := parseVocab(data)
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != vocabFile || fe.Line != 0 {
				t.Fatalf("error %#v is not a *FileError for %s", err, vocabFile)
			}
			return
		}
		if len(vocab) == 0 {
			t.Fatal("empty vocabulary accepted")
		}
		for tok, id := range vocab {
			if id < 0 || id > 1<<31-1 {
				t.Fatalf("token %q: id %d out of range", tok, id)
			}
			if !utf8.ValidString(tok) {
				t.Fatalf("token %+q is not valid UTF-8", tok)
			}
		}
		// Written back as JSON, the vocabulary reads the same.
		again, err := json.Marshal(vocab)
		if err != nil {
			t.Fatal(err)
		}
		vocab2, err := parseVocab(again)
		if err != nil {
			t.Fatalf("re-reading %s: %v", again, err)
		}
		if !maps.Equal(vocab, vocab2) {
			t.Fatalf("round trip changed the vocabulary:\n%v\n%v", vocab, vocab2)
		}
		tok, err := New(data, []byte(tinyMerges), Options{})
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("New with a vocabulary that parses: %v, want a *TokenError", err)
			}
			if _, ok := vocab[te.Token]; ok {
				t.Fatalf("New: %v, but it is in the vocabulary", err)
			}
			return
		}
		ids := vocabIDs(vocab)
		for _, text := range []string{"", "abc ab! <|endoftext|>", "ababc, cab"} {
			checkRow(t, tok, ids, text)
		}
	})
}

// FuzzMerges parses arbitrary merges.txt contents and builds a tokenizer on
// the ones that parse.
func FuzzMerges(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		merges, err := parseMerges(data)
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != mergesFile {
				t.Fatalf("error %#v is not a *FileError for %s", err, mergesFile)
			}
			if lines := strings.Count(universalNewlines(string(data)), "\n") + 1; fe.Line < 0 || fe.Line > lines {
				t.Fatalf("error on line %d of a %d-line file", fe.Line, lines)
			}
			return
		}
		if len(merges) == 0 || len(merges) > maxMerges {
			t.Fatalf("%d merges", len(merges))
		}
		var b strings.Builder
		b.WriteString("#version: 0.2\n")
		for i, m := range merges {
			if m.a == "" || m.b == "" || strings.ContainsFunc(m.a, isPySpace) || strings.ContainsFunc(m.b, isPySpace) ||
				!utf8.ValidString(m.a) || !utf8.ValidString(m.b) {
				t.Fatalf("merge %d is %+q %+q", i+1, m.a, m.b)
			}
			b.WriteString(m.a + " " + m.b + "\n")
		}
		// Written back one merge a line, the merges read the same.
		again, err := parseMerges([]byte(b.String()))
		if err != nil {
			t.Fatalf("re-reading: %v", err)
		}
		if !slices.Equal(merges, again) {
			t.Fatalf("round trip changed the merges:\n%q\n%q", merges, again)
		}
		tok, err := New([]byte(tinyVocab), data, Options{})
		if err != nil {
			t.Fatal(err)
		}
		vocab, _ := parseVocab([]byte(tinyVocab))
		ids := vocabIDs(vocab)
		for _, text := range []string{"abc", "ababc cab! bcbc", "a\u00e9b \u4e2d"} {
			checkRow(t, tok, ids, text)
		}
	})
}

// realTokenizers are the SD 1.x and SD 2.x tokenizers on the real CLIP
// vocabulary, built once for FuzzEncode.
var realTokenizers = sync.OnceValues(func() ([]*Tokenizer, error) {
	var toks []*Tokenizer
	for _, model := range conformanceModels {
		tok, err := Load(conformanceDir + "/" + model + "/tokenizer")
		if err != nil {
			return nil, err
		}
		toks = append(toks, tok)
	}
	return toks, nil
})

// FuzzEncode encodes arbitrary prompts with the real SD 1.x and SD 2.x
// tokenizers.
func FuzzEncode(f *testing.F) {
	toks, err := realTokenizers()
	if err != nil {
		f.Fatal(err)
	}
	ids := vocabIDs(toks[0].bpe.vocab)
	f.Fuzz(func(t *testing.T, text string) {
		for _, tok := range toks {
			checkRow(t, tok, ids, text)
			checkNoByteLost(t, tok, text)
		}
		checkClean(t, text)
	})
}

// checkNoByteLost checks that BPE keeps every byte of the cleaned text but
// the spaces between words, in order: the symbols of Tokenize, read back
// through bytes_to_unicode, are the special tokens and the cleaned pieces
// between them with spaces removed.
func checkNoByteLost(t *testing.T, tok *Tokenizer, text string) {
	t.Helper()
	var want strings.Builder
	tok.splitSpecial(text, func(piece string, special bool) {
		if special {
			want.WriteString(piece)
		} else {
			want.WriteString(strings.ReplaceAll(cleanText(piece), " ", ""))
		}
	})
	symbols, _ := tok.tokenize(text)
	var got []byte
	for _, s := range symbols {
		if _, ok := tok.specialID[s]; ok {
			got = append(got, s...)
			continue
		}
		for _, r := range strings.TrimSuffix(s, endOfWord) {
			b, ok := symbolByte[r]
			if !ok {
				t.Fatalf("Tokenize(%+q): symbol %+q has %+q, which stands for no byte", text, s, r)
			}
			got = append(got, b)
		}
	}
	if string(got) != want.String() {
		t.Errorf("Tokenize(%+q) symbols spell\n%+q, want\n%+q", text, got, want.String())
	}
}

// symbolByte inverts byteSymbols.
var symbolByte = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, s := range byteSymbols {
		r, _ := utf8.DecodeRuneInString(s)
		m[r] = byte(b)
	}
	return m
}()

// checkClean checks the shape of cleaned text: valid UTF-8, words
// separated by single spaces, no other whitespace, no control characters
// that ftfy removes.
func checkClean(t *testing.T, text string) {
	t.Helper()
	c := cleanText(text)
	if !utf8.ValidString(c) {
		t.Fatalf("cleanText(%+q) = %+q is not valid UTF-8", text, c)
	}
	if strings.HasPrefix(c, " ") || strings.HasSuffix(c, " ") || strings.Contains(c, "  ") {
		t.Errorf("cleanText(%+q) = %+q has spaces at an end or doubled", text, c)
	}
	for _, r := range c {
		if r != ' ' && isSpace(r) {
			t.Errorf("cleanText(%+q) = %+q has whitespace %U", text, c, r)
		}
		if _, ok := removeControlChar(r); ok {
			t.Errorf("cleanText(%+q) = %+q has control character %U", text, c, r)
		}
	}
}
