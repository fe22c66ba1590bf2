package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// configKeys maps each key of a --config file to the edit flag it sets: a
// value in the file goes through the flag's own parser, so it is read and
// checked exactly as on the command line. Three official keys are special
// (see apply): sd_version is a model version, data_path the input and
// output_path the folder of the default output.
var configKeys = map[string]string{
	// the official TokenFlow config_pnp.yaml
	"prompt":            "prompt",
	"negative_prompt":   "negative-prompt",
	"n_timesteps":       "steps",
	"guidance_scale":    "guidance",
	"pnp_attn_t":        "pnp-attn",
	"pnp_f_t":           "pnp-conv",
	"batch_size":        "batch-size",
	"n_frames":          "frames",
	"n_inversion_steps": "inversion-steps",
	"seed":              "seed",
	"device":            "device",
	"latents_path":      "cache-dir",
	"sd_version":        "model",
	"data_path":         "",
	"output_path":       "",
	// this tool's flags; not config (one file), force (overwriting is asked
	// for on the command line) nor ort-lib (a machine's setting)
	"model":            "model",
	"original_config":  "original-config",
	"size":             "size",
	"start":            "start",
	"stride":           "stride",
	"fps":              "fps",
	"threads":          "threads",
	"dtype":            "dtype",
	"cache_dir":        "cache-dir",
	"json":             "json",
	"inversion_prompt": "inversion-prompt",
	"inversion_steps":  "inversion-steps",
	"inversion_batch":  "inversion-batch",
	"steps":            "steps",
	"guidance":         "guidance",
	"pnp_attn":         "pnp-attn",
	"pnp_conv":         "pnp-conv",
	"keyframes":        "keyframes",
	"out":              "out",
	"save_latents":     "save-latents",
	"frames_dir":       "frames-dir",
	"prompts":          "prompts",
	"prompts_per_call": "prompts-per-call",
	"no_resume":        "no-resume",
	"keyframe_window":  "keyframe-window",
	// SDEdit (--mode sdedit): the official config_sdedit.yaml's start and
	// use_ddim_noise, and this tool's names. start is --start (the first
	// frame) except in an SDEdit edit, where it is the official start,
	// --strength (see apply).
	"use_ddim_noise": "ddim-noise",
	"mode":           "mode",
	"strength":       "strength",
	"ddim_noise":     "ddim-noise",
}

// listKeys may hold a list: several prompts, and a negative prompt for each.
var listKeys = map[string]bool{"prompt": true, "negative_prompt": true}

// sdVersions maps the official sd_version values to hub ids.
var sdVersions = map[string]string{
	"1.5": "runwayml/stable-diffusion-v1-5",
	"2.0": "stabilityai/stable-diffusion-2-base",
	"2.1": "stabilityai/stable-diffusion-2-1-base",
}

// editConfig is a --config file, read and checked for its keys but not yet
// applied to the flags.
type editConfig struct {
	settings []configSetting // in file order
	line     map[string]int  // the line of each key present
}

// configSetting is one "key: value" line of a --config file.
type configSetting struct {
	key, value string
	line       int
	list       []string // the items of a list value (listKeys)
	isList     bool
}

// loadConfig reads --config: a YAML mapping of known keys to single values,
// each key once and no two keys setting one flag.
func loadConfig(path string) (*editConfig, error) {
	b, err := readFlagFile("--config", path)
	if err != nil {
		return nil, err
	}
	c, err := parseConfig(b)
	if err != nil {
		return nil, usageErr("--config %s: %v", path, err)
	}
	return c, nil
}

// parseConfig reads the text of a --config file; its errors start with the
// line they are about.
func parseConfig(b []byte) (*editConfig, error) {
	c := &editConfig{line: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return c, nil
	} else if err != nil {
		return nil, fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, fmt.Errorf("line %d: a second YAML document: give the settings as one mapping of key: value lines", next.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if len(doc.Content) == 0 {
		return c, nil
	}
	top := resolveAlias(doc.Content[0])
	switch {
	case top.Kind == yaml.ScalarNode && top.ShortTag() == "!!null":
		return c, nil // only comments
	case top.Kind != yaml.MappingNode:
		return nil, fmt.Errorf("line %d: want key: value lines, found %s", top.Line, kindName(top))
	}
	flagKey := map[string]configSetting{} // which key sets each flag
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], resolveAlias(top.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: want a key such as n_timesteps, found %s", k.Line, kindName(k))
		}
		s := configSetting{key: k.Value, line: k.Line}
		flag, ok := configKeys[s.key]
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: unknown key %q%s", s.line, s.key, suggestKey(s.key))
		case c.line[s.key] > 0:
			return nil, fmt.Errorf("line %d: %s is already set on line %d: keep one", s.line, s.key, c.line[s.key])
		case v.Kind == yaml.SequenceNode && listKeys[s.key]:
			if len(v.Content) == 0 {
				return nil, fmt.Errorf("line %d: %s: an empty list: give one or more", s.line, s.key)
			}
			s.isList = true
			for _, item := range v.Content {
				item = resolveAlias(item)
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("line %d: %s: want a list of single values, found %s", item.Line, s.key, kindName(item))
				}
				if item.ShortTag() == "!!null" {
					s.list = append(s.list, "")
				} else {
					s.list = append(s.list, item.Value)
				}
			}
		case v.Kind != yaml.ScalarNode:
			what := "a single value"
			if listKeys[s.key] {
				what = "a single value or a list"
			}
			return nil, fmt.Errorf("line %d: %s: want %s, found %s", s.line, s.key, what, kindName(v))
		}
		if prev, dup := flagKey[flag]; dup && flag != "" && s.key != "sd_version" && prev.key != "sd_version" {
			return nil, fmt.Errorf("line %d: %s and %s (line %d) both set --%s: keep one", s.line, s.key, prev.key, prev.line, flag)
		}
		if s.key != "sd_version" {
			flagKey[flag] = s
		}
		if v.ShortTag() != "!!null" && !s.isList {
			s.value = v.Value
		}
		c.settings = append(c.settings, s)
		c.line[s.key] = s.line
	}
	return c, nil
}

// apply sets the file's values through the flags' parsers, except for flags
// given on the command line (they override the file).
func (c *editConfig) apply(o *EditOptions, fs *pflag.FlagSet, configPath string) error {
	given := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { given[f.Name] = true })
	sdedit, err := c.sdeditMode(o, fs, given, configPath)
	if err != nil {
		return err
	}
	for _, s := range c.settings {
		value := s.value
		if s.isList {
			// prompt: every item a prompt; negative_prompt: one per prompt.
			// A flag on the command line wins (strings need no check).
			name := configKeys[s.key]
			switch {
			case given[name]:
			case s.key == "prompt":
				for _, p := range s.list {
					if err := fs.Set(name, p); err != nil {
						return usageErr("--config %s: line %d: %s %s", configPath, s.line, s.key, invalidValue(p, err))
					}
				}
			default:
				o.NegativePrompts = s.list
			}
			continue
		}
		switch s.key {
		case "data_path": // the input argument wins
			if o.Input == "" {
				o.Input = value
			}
			continue
		case "output_path": // where <input>.tokenflow.mp4 goes, unless out is set
			if !given["out"] && c.line["out"] == 0 {
				o.outDir = value
			}
			continue
		case "sd_version": // a model key or flag wins
			if given["model"] || c.line["model"] > 0 {
				continue
			}
			id, ok := sdVersions[value]
			if !ok {
				return usageErr("--config %s: line %d: sd_version %q is not supported: use 1.5, 2.0 or 2.1, or give model: a diffusers folder", configPath, s.line, value)
			}
			value = id
		}
		name := configKeys[s.key]
		if s.key == "start" && sdedit {
			name = "strength" // the official SDEdit start
		}
		f := fs.Lookup(name)
		if f == nil {
			return fmt.Errorf("--config %s: line %d: %s: edit has no flag --%s", configPath, s.line, s.key, name)
		}
		var err error
		if given[f.Name] && f.Name == "prompt" {
			continue // the command line's prompts win; a string needs no check
		}
		if given[f.Name] {
			// the command line wins, but the file's value must be valid too
			keep := f.Value.String()
			err = f.Value.Set(value)
			f.Value.Set(keep)
		} else {
			err = fs.Set(f.Name, value)
		}
		if err != nil {
			return usageErr("--config %s: line %d: %s %s", configPath, s.line, s.key, invalidValue(value, err))
		}
	}
	o.afterParse(fs)
	return nil
}

// sdeditMode says whether the edit is an SDEdit one, in which the key
// start is the official start (--strength) rather than the first frame:
// --mode on the command line, else the file's mode, else sdedit when the
// file holds use_ddim_noise (an official config_sdedit.yaml), which then
// sets --mode sdedit. start and strength are then one setting: not both.
func (c *editConfig) sdeditMode(o *EditOptions, fs *pflag.FlagSet, given map[string]bool, configPath string) (bool, error) {
	mode := o.Mode
	if !given["mode"] {
		for _, s := range c.settings {
			if s.key == "mode" {
				mode = s.value
			}
		}
		if c.line["mode"] == 0 && c.line["use_ddim_noise"] > 0 {
			if err := fs.Set("mode", "sdedit"); err != nil {
				return false, err
			}
			mode = "sdedit"
		}
	}
	if mode != "sdedit" {
		return false, nil
	}
	if a, b := c.line["start"], c.line["strength"]; a > 0 && b > 0 {
		later, earlier, line := "start", "strength", b
		if b > a {
			later, earlier, line = "strength", "start", a
		}
		return false, usageErr("--config %s: line %d: %s and %s (line %d) both set --strength: keep one", configPath, max(a, b), later, earlier, line)
	}
	return true, nil
}

// resolveAlias follows YAML aliases (*name) to the node they stand for.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("%q", n.Value)
}

// suggestKey is ` (did you mean n_timesteps?)` for a key one or two edits
// away from a known one.
func suggestKey(key string) string {
	best, bestD := "", 3
	for k := range configKeys {
		if d := editDistance(key, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ": see 'tokenflow edit --help' for the keys"
	}
	return fmt.Sprintf(": did you mean %s?", best)
}

// editDistance is the Levenshtein distance of a and b, bytewise.
func editDistance(a, b string) int {
	row := make([]int, len(b)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		diag := row[0]
		row[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			diag, row[j] = row[j], min(row[j]+1, row[j-1]+1, diag+cost)
		}
	}
	return row[len(b)]
}
