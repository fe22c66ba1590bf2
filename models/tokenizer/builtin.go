package tokenizer

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
)

// The standard CLIP BPE vocabulary and merges (49,408 tokens), as every
// SD 1.x and 2.x checkpoint's tokenizer/ folder holds them, carried in the
// binary for single-file checkpoints, which have no tokenizer files.
//
//go:embed clipbpe/vocab.json clipbpe/merges.txt
var builtinFiles embed.FS

// Pad tokens of the standard tokenizers.
const (
	PadSD1 = "<|endoftext|>" // openai/clip-vit-large-patch14
	PadSD2 = "!"             // OpenCLIP as stabilityai's SD 2 folders configure it
)

// WriteBuiltin writes the standard CLIP tokenizer into dir as a diffusers
// tokenizer/ folder: vocab.json, merges.txt, special_tokens_map.json and
// tokenizer_config.json, padding with pad (PadSD1 or PadSD2).
func WriteBuiltin(dir, pad string) error {
	files, err := fs.Sub(builtinFiles, "clipbpe")
	if err != nil {
		return fmt.Errorf("builtin tokenizer: %w", err)
	}
	if err := os.CopyFS(dir, files); err != nil {
		return err
	}
	token := func(s string) map[string]any {
		return map[string]any{"content": s, "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}
	}
	specials := map[string]any{"bos_token": token(defaultBOS), "eos_token": token(defaultEOS), "unk_token": token(defaultUnk), "pad_token": pad}
	config := map[string]any{"add_prefix_space": false, "do_lower_case": true, "errors": "replace", "model_max_length": defaultMaxLength, "tokenizer_class": "CLIPTokenizer"}
	maps.Copy(config, specials)
	for name, v := range map[string]any{specialTokensFile: specials, configFile: config} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}
