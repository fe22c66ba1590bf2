package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
)

// The conformance fixtures are testdata/conformance/<model>/: the
// tokenizer/ folder of the tiny checkpoints (the real SD 1.5 and SD 2.1
// vocabulary and merges) and what transformers 4.31's slow CLIPTokenizer
// with ftfy 6.1.1 made of eight prompts (expected/MANIFEST.md).
const conformanceDir = "../../testdata/conformance"

var conformanceModels = []string{"tiny-sd15", "tiny-sd21"}

// promptsFile is expected/tokenizer_prompts.json.
type promptsFile struct {
	PadToken       string `json:"pad_token"`
	PadTokenID     int64  `json:"pad_token_id"`
	BOSTokenID     int64  `json:"bos_token_id"`
	EOSTokenID     int64  `json:"eos_token_id"`
	ModelMaxLength int    `json:"model_max_length"`
	Prompts        []struct {
		Prompt         string   `json:"prompt"`
		NormalizedText string   `json:"normalized_text"`
		BPETokens      []string `json:"bpe_tokens"`
		IDsUnpadded    []int64  `json:"ids_unpadded_untruncated"`
		Truncated      bool     `json:"truncated"`
		InputIDs       []int64  `json:"input_ids"`
	} `json:"prompts"`
}

func loadConformance(t testing.TB, model string) (*Tokenizer, *promptsFile) {
	t.Helper()
	tok, err := Load(filepath.Join(conformanceDir, model, "tokenizer"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(conformanceDir, model, "expected", "tokenizer_prompts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pf promptsFile
	if err := json.Unmarshal(data, &pf); err != nil {
		t.Fatalf("tokenizer_prompts.json: %v", err)
	}
	if len(pf.Prompts) == 0 {
		t.Fatal("tokenizer_prompts.json has no prompts")
	}
	return tok, &pf
}

// diff describes how got differs from want, "" when equal, in the
// (-want +got) style: lengths, then the first differing element.
// checkEncode fails t unless tok.Encode(prompt) gives ids, truncated or not
// as said.
func checkEncode(t *testing.T, tok *Tokenizer, prompt string, ids []int64, truncated bool) {
	t.Helper()
	got, gotTrunc := tok.Encode(prompt)
	if d := diff(ids, got); d != "" {
		t.Errorf("Encode(%q) %s", prompt, d)
	}
	if gotTrunc != truncated {
		t.Errorf("Encode(%q) truncated = %v, want %v", prompt, gotTrunc, truncated)
	}
}

func diff[T comparable](want, got []T) string {
	n := min(len(want), len(got))
	for i := 0; i < n; i++ {
		if want[i] != got[i] {
			return fmt.Sprintf("(-want +got) at index %d:\n-%v\n+%v\n(len want %d, got %d)", i, want[i], got[i], len(want), len(got))
		}
	}
	if len(want) != len(got) {
		var extra string
		if len(want) > n {
			extra = fmt.Sprintf("-%v", want[n:])
		} else {
			extra = fmt.Sprintf("+%v", got[n:])
		}
		return fmt.Sprintf("(-want +got) lengths %d vs %d, from index %d:\n%s", len(want), len(got), n, extra)
	}
	return ""
}

func TestConformancePrompts(t *testing.T) {
	for _, model := range conformanceModels {
		t.Run(model, func(t *testing.T) {
			tok, pf := loadConformance(t, model)
			if tok.BOSID() != pf.BOSTokenID || tok.EOSID() != pf.EOSTokenID || tok.PadID() != pf.PadTokenID || tok.MaxLength() != pf.ModelMaxLength {
				t.Errorf("bos/eos/pad/max = %d/%d/%d/%d, want %d/%d/%d/%d",
					tok.BOSID(), tok.EOSID(), tok.PadID(), tok.MaxLength(),
					pf.BOSTokenID, pf.EOSTokenID, pf.PadTokenID, pf.ModelMaxLength)
			}
			for i, p := range pf.Prompts {
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					if got := cleanText(p.Prompt); got != p.NormalizedText {
						t.Errorf("cleanText(%q):\n-%q\n+%q", p.Prompt, p.NormalizedText, got)
					}
					symbols, ids := tok.tokenize(p.Prompt)
					if d := diff(p.BPETokens, symbols); d != "" {
						t.Errorf("BPE tokens of %q %s", p.Prompt, d)
					}
					wantIDs := p.IDsUnpadded[1 : len(p.IDsUnpadded)-1] // without BOS/EOS
					if d := diff(wantIDs, ids); d != "" {
						t.Errorf("ids of %q %s", p.Prompt, d)
					}
					if d := diff(wantIDs, tok.Tokenize(p.Prompt)); d != "" {
						t.Errorf("Tokenize(%q) %s", p.Prompt, d)
					}
					checkEncode(t, tok, p.Prompt, p.InputIDs, p.Truncated)
				})
			}
		})
	}
}

// TestConformanceSafetensors checks Encode against the [8,77] int64
// input_ids of expected/tokenizer.safetensors.
func TestConformanceSafetensors(t *testing.T) {
	for _, model := range conformanceModels {
		t.Run(model, func(t *testing.T) {
			tok, pf := loadConformance(t, model)
			want, shape := fixture.Open(t, filepath.Join(conformanceDir, model, "expected", "tokenizer.safetensors")).I64("input_ids")
			wantShape := []int64{int64(len(pf.Prompts)), int64(tok.MaxLength())}
			if d := diff(wantShape, shape); d != "" {
				t.Fatalf("input_ids shape %s", d)
			}
			prompts := make([]string, len(pf.Prompts))
			for i, p := range pf.Prompts {
				prompts[i] = p.Prompt
			}
			for i := range prompts {
				got, truncated := tok.Encode(prompts[i])
				if d := diff(want[i*tok.MaxLength():(i+1)*tok.MaxLength()], got); d != "" {
					t.Errorf("row %d (%q) %s", i, prompts[i], d)
				}
				if truncated != pf.Prompts[i].Truncated {
					t.Errorf("row %d truncated = %v, want %v", i, truncated, pf.Prompts[i].Truncated)
				}
			}
		})
	}
}

func TestEncodeTruncation(t *testing.T) {
	tok, _ := loadConformance(t, "tiny-sd15")
	const cat = 2368 // "cat</w>"
	tests := []struct {
		name      string
		words     int
		truncated bool
	}{
		{"74 tokens", 74, false},
		{"75 tokens, exactly full", 75, false},
		{"76 tokens", 76, true},
		{"300 tokens", 300, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prompt := strings.TrimSpace(strings.Repeat("cat ", tt.words))
			if n := len(tok.Tokenize(prompt)); n != tt.words {
				t.Fatalf("Tokenize gave %d tokens, want %d", n, tt.words)
			}
			ids, truncated := tok.Encode(prompt)
			if truncated != tt.truncated {
				t.Errorf("truncated = %v, want %v", truncated, tt.truncated)
			}
			want := make([]int64, 77)
			want[0] = tok.BOSID()
			kept := min(tt.words, 75)
			for i := 1; i <= kept; i++ {
				want[i] = cat
			}
			for i := kept + 1; i < 77; i++ {
				want[i] = tok.PadID() // the EOS slot first: for SD 1.x pad == EOS
			}
			want[kept+1] = tok.EOSID()
			if d := diff(want, ids); d != "" {
				t.Error(d)
			}
		})
	}
}

// TestTokenizeCases covers what the eight conformance prompts do not. The
// expected symbols come from a separate Python implementation of CLIP's
// tokenizer (the `regex` module with CLIPTokenizer's pattern, str.lower,
// bytes_to_unicode and the bpe loop of tokenization_clip.py) over the same
// vocab.json and merges.txt; none of these inputs is changed by ftfy.
func TestTokenizeCases(t *testing.T) {
	sd15, _ := loadConformance(t, "tiny-sd15")
	sd21, _ := loadConformance(t, "tiny-sd21")
	tests := []struct {
		name    string
		in      string
		symbols []string // SD 1.5's
		sd15    []int64
		sd21    []int64 // when it differs from sd15 (pad "!" is special)
	}{
		{
			name:    "contractions in any case",
			in:      "It's THEY'RE we'VE I'M you'LL he'D don'T ''s",
			symbols: []string{"it</w>", "'s</w>", "they</w>", "'re</w>", "we</w>", "'ve</w>", "i</w>", "'m</w>", "you</w>", "'ll</w>", "he</w>", "'d</w>", "don</w>", "'t</w>", "''</w>", "s</w>"},
			sd15:    []int64{585, 568, 889, 982, 649, 1200, 328, 880, 592, 1342, 797, 1896, 847, 713, 8445, 338},
		},
		{
			name:    "final sigma",
			in:      "ΟΔΟΣ ΟΔΟΣ. Σ",
			symbols: []string{"Î", "¿", "Î", "´", "Î", "¿", "Ï", "Ĥ</w>", "Î", "¿", "Î", "´", "Î", "¿", "Ï", "Ĥ</w>", ".</w>", "Ï", "ĥ</w>"},
			sd15:    []int64{138, 123, 138, 112, 138, 123, 139, 480, 138, 123, 138, 112, 138, 123, 139, 480, 269, 139, 481},
		},
		{
			name:    "dotted capital I lower-cases to i + U+0307",
			in:      "İstanbul",
			symbols: []string{"i</w>", "Ìĩ</w>", "stanbul</w>"},
			sd15:    []int64{328, 16384, 11231},
		},
		{
			name:    "numbers are single characters",
			in:      "x² H₂O ½ Ⅻ ٣",
			symbols: []string{"x</w>", "Â²</w>", "h</w>", "âĤ", "Ĥ</w>", "o</w>", "Â½</w>", "â", "ħ", "»</w>", "Ù", "£</w>"},
			sd15:    []int64{343, 41175, 327, 5227, 480, 334, 33613, 158, 227, 375, 149, 352},
		},
		{
			name:    "combining marks are not letters",
			in:      "हिन्दी",
			symbols: []string{"à¤¹</w>", "à¤¿</w>", "à¤¨</w>", "à¥į</w>", "à¤¦</w>", "à¥Ģ</w>"},
			sd15:    []int64{29446, 26721, 26090, 19389, 29552, 25751},
		},
		{
			name:    "emoji sequences",
			in:      "👨\u200d👩\u200d👧 🇫🇷",
			symbols: []string{"ðŁĳ¨âĢį", "ðŁĳ©âĢį", "ðŁĳ", "§</w>", "ðŁĩ«ðŁĩ·</w>"},
			sd15:    []int64{25023, 26304, 964, 356, 16223},
		},
		{
			name:    "special tokens in the prompt",
			in:      "a<|endoftext|>b !!<|endoftext|> <|ENDOFTEXT|>",
			symbols: []string{"a</w>", "<|endoftext|>", "b</w>", "!!</w>", "<|endoftext|>", "<|endoftext|>"},
			sd15:    []int64{320, 49407, 321, 748, 49407, 49407},
			sd21:    []int64{320, 49407, 321, 0, 0, 49407, 49407},
		},
		{
			name:    "exclamation marks",
			in:      "hello!!! world?!",
			symbols: []string{"hello</w>", "!!!</w>", "world</w>", "?!</w>"},
			sd15:    []int64{3306, 995, 1002, 2835},
			sd21:    []int64{3306, 0, 0, 0, 1002, 286, 0},
		},
		{
			name:    "unicode whitespace",
			in:      "tab\tnbsp\u00a0em\u2003end\u3000",
			symbols: []string{"tab</w>", "nb", "sp</w>", "em</w>", "end</w>"},
			sd15:    []int64{14724, 6459, 4393, 2270, 806},
		},
		{
			name:    "punctuation and digits",
			in:      "C++ / a_b #tag @user $5 3.14",
			symbols: []string{"c</w>", "++</w>", "/</w>", "a</w>", "_</w>", "b</w>", "#</w>", "tag</w>", "@</w>", "user</w>", "$</w>", "5</w>", "3</w>", ".</w>", "1</w>", "4</w>"},
			sd15:    []int64{322, 19056, 270, 320, 318, 321, 258, 3640, 287, 7031, 259, 276, 274, 269, 272, 275},
		},
		{
			name:    "ligatures through ftfy",
			in:      "ﬁne ﬂower ĳssel",
			symbols: []string{"fine</w>", "flower</w>", "ij", "ssel</w>"},
			sd15:    []int64{3797, 4055, 7337, 19373},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			symbols, ids := sd15.tokenize(tt.in)
			if d := diff(tt.symbols, symbols); d != "" {
				t.Errorf("sd15 symbols %s", d)
			}
			if d := diff(tt.sd15, ids); d != "" {
				t.Errorf("sd15 ids %s", d)
			}
			want21 := tt.sd21
			if want21 == nil {
				want21 = tt.sd15
			}
			if d := diff(want21, sd21.Tokenize(tt.in)); d != "" {
				t.Errorf("sd21 ids %s", d)
			}
		})
	}
}

func TestEncodeEmpty(t *testing.T) {
	tok, _ := loadConformance(t, "tiny-sd21")
	row, _ := tok.Encode("")
	want := make([]int64, 77) // SD 2.x pads with "!" = 0
	want[0], want[1] = 49406, 49407
	if d := diff(want, row); d != "" {
		t.Errorf("Encode(\"\") %s", d)
	}
}

// TestConcurrentEncode exercises the word cache from several goroutines
// (meaningful under -race).
func TestConcurrentEncode(t *testing.T) {
	tok, pf := loadConformance(t, "tiny-sd15")
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 20; k++ {
				p := pf.Prompts[(g+k)%len(pf.Prompts)]
				if ids, _ := tok.Encode(p.Prompt); diff(p.InputIDs, ids) != "" {
					errs <- p.Prompt
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for p := range errs {
		t.Errorf("concurrent Encode(%q) differs from the fixture", p)
	}
}

func BenchmarkLoad(b *testing.B) {
	dir := filepath.Join(conformanceDir, "tiny-sd15", "tokenizer")
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	tok, pf := loadConformance(b, "tiny-sd15")
	prompt := pf.Prompts[len(pf.Prompts)-1].Prompt // the long one
	for b.Loop() {
		tok.Encode(prompt)
	}
}

// BenchmarkEncodeUncached measures BPE itself: every iteration gets a fresh
// word cache.
func BenchmarkEncodeUncached(b *testing.B) {
	tok, pf := loadConformance(b, "tiny-sd15")
	prompt := pf.Prompts[len(pf.Prompts)-1].Prompt
	for b.Loop() {
		b.StopTimer()
		tok.bpe.cache = make(map[string]bpeResult)
		b.StartTimer()
		tok.Encode(prompt)
	}
}

// TestBuiltin: the tokenizer carried in the binary, written with SD 1's and
// SD 2's pad tokens and loaded back, gives the ids of the single-file fixtures' expected
// tokenizer.safetensors (transformers' slow CLIPTokenizer).
func TestBuiltin(t *testing.T) {
	for _, tt := range []struct {
		model, pad string
		padID      int64
	}{{"tiny-sd15-ldm", PadSD1, 49407}, {"tiny-sd21-ldm", PadSD2, 0}} {
		t.Run(tt.model, func(t *testing.T) {
			tokDir := t.TempDir()
			if err := WriteBuiltin(tokDir, tt.pad); err != nil {
				t.Fatal(err)
			}
			tok, err := Load(tokDir)
			if err != nil {
				t.Fatal(err)
			}
			if tok.PadID() != tt.padID {
				t.Errorf("pad id %d, want %d", tok.PadID(), tt.padID)
			}
			dir := filepath.Join("..", "..", "testdata", "conformance", "single-file", tt.model+".expected")
			b, err := os.ReadFile(filepath.Join(dir, "tokenizer_prompts.json"))
			if err != nil {
				t.Fatal(err)
			}
			var pf struct {
				Prompts []struct {
					Prompt string `json:"prompt"`
				} `json:"prompts"`
			}
			if err := json.Unmarshal(b, &pf); err != nil {
				t.Fatal(err)
			}
			want, _ := fixture.Open(t, filepath.Join(dir, "tokenizer.safetensors")).I64("input_ids")
			var prompts []string
			for _, p := range pf.Prompts {
				prompts = append(prompts, p.Prompt)
			}
			var got []int64
			for _, p := range prompts {
				row, _ := tok.Encode(p)
				got = append(got, row...)
			}
			if len(got) != len(want) {
				t.Fatalf("%d ids, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("ids differ first at row %d (%q) column %d: got %d want %d", i/77, prompts[i/77], i%77, got[i], want[i])
				}
			}
		})
	}
}
