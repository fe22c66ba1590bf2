package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
)

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
