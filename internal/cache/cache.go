package cache

// The inversion cache (DESIGN.md section 5). One folder per inversion:
//
//	<root>/inversions/<Key.ID()>/
//	    latents.safetensors   "latents" [N,C,h,w] (z0) and "noisy_latents_<t>"
//	                          [N,C,h,w] for every kept timestep t, float32, in
//	                          that order (the order an inversion makes them)
//	    manifest.json         what the entry is (Manifest), written last
//	    reconstruction.mp4    when asked for (written by the caller)
//
// An entry is made in ".<id>.partial" next to its final place, one tensor
// at a time as the inversion makes them, with a state to resume from after
// every step (partial.go), and renamed into place when complete, so a
// reader sees a whole entry or none. A run holds the entry's lock
// (".<id>.lock", see Acquire) from its lookup to its store, so two runs
// on one video do not both compute it: the second waits, then reuses.
// An edit reads an entry one tensor at a time (Reader, reader.go).
//
// LookupContext trusts nothing it reads: the manifest must parse, have our format,
// carry exactly the key it is filed under, and describe a consistent latent
// tensor set; latents.safetensors must have the manifest's size and CRC-32C
// and hold exactly the tensors the manifest names, with the right dtype and
// shape, and only finite values (checked in the same read as the CRC; the
// writer refuses NaN and Inf too). Anything else is a reason to rebuild,
// never an entry to use.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/ctxio"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

// Format is the manifest format this code reads and writes. Bump it when
// the layout or the meaning of the stored latents changes; entries of another
// format are rebuilt.
const Format = 1

// Numerics identifies how this code computes latents: the VAE encoding,
// the DDIM inversion and their float32 arithmetic. Bump it with any change
// that alters the latents an inversion stores (an op order, a kernel
// choice, the scheduler's rounding, a graph rewrite); entries made with
// other numerics are rebuilt, with a reason naming the tool version that
// made them. A tool version alone decides nothing: a release that leaves
// the numbers alone keeps every entry.
const Numerics = 1

// keyVersion is hashed into every Key.ID, so that changing the key's
// canonical encoding moves every entry to a new folder.
const keyVersion = "tokenflow inversion key v1"

const (
	manifestName       = "manifest.json"
	latentsName        = "latents.safetensors"
	reconstructionName = "reconstruction.mp4"
	subdir             = "inversions"
	z0Tensor           = "latents"
	noisyPrefix        = "noisy_latents_"
	// tempMaxAge is how old a temporary folder must be before StoreContext
	// removes it: old enough that no live run is still filling it.
	tempMaxAge = 24 * time.Hour
	// maxElements bounds a manifest's latent shape, so that an edited
	// manifest cannot make us multiply into an overflow (2^40 floats is 4 TB).
	maxElements = int64(1) << 40
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// crcPattern is what a LatentsCRC looks like; tempPattern a temporary
// folder of ours: an interrupted entry
// (".<id>.tmp-<random>", atomicfile's naming) or a replaced one being
// removed (".<id>.old-<random>").
var (
	crcPattern  = regexp.MustCompile(`^[0-9a-f]{8}$`)
	tempPattern = regexp.MustCompile(`^\.[0-9a-f]{24}\.(tmp|old)-`)
)

// Key identifies an inversion: equal keys mean the cached latents can be
// reused. Every field is part of Key.ID.
type Key struct {
	// VideoSHA256 is the sha256 (hex) of the input's bytes; for a frame
	// folder, of the sorted frame files' names and bytes.
	VideoSHA256 string `json:"video_sha256"`
	// ModelID is a hash of the model's configs, weight headers and weight
	// bytes (models.Checkpoint.Identity), computed by the caller.
	ModelID string `json:"model_id"`
	// Width and Height are the working frame size in pixels.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Start, Count and Stride are the frame range: Count frames from Start,
	// every Stride-th. Count is the actual number of frames.
	Start  int `json:"start"`
	Count  int `json:"count"`
	Stride int `json:"stride"`
	// InversionPrompt is the text the UNet was conditioned on (may be empty).
	InversionPrompt string `json:"inversion_prompt"`
	// InversionSteps is the number of DDIM inversion steps.
	InversionSteps int `json:"inversion_steps"`
	// SaveSteps is the editing schedule's length (which timesteps are kept).
	SaveSteps int `json:"save_steps"`
	// FolderFPS is the frame rate used for a frame folder ("" for media
	// files, whose rate is part of their bytes).
	FolderFPS string `json:"folder_fps"`
	// DType is the element type of the graphs that computed the latents:
	// "" for float32, "fp16" for half precision. An fp16 inversion differs
	// from the fp32 one by fp16's rounding, so neither is reused for the
	// other. Only a non-empty DType joins the ID's encoding, so the IDs of
	// float32 entries, made before the dtype was recorded, are unchanged.
	DType string `json:"dtype,omitempty"`
}

// ID is a stable short id for k: the first 24 hex digits of the sha256 of a
// canonical, versioned encoding of every field. It names the entry's folder.
func (k Key) ID() string {
	h := sha256.Sum256([]byte(k.canonical()))
	return hex.EncodeToString(h[:])[:24]
}

// canonical is the encoding ID hashes: one "name value" line per field, in
// the struct's order, named by its JSON key, strings quoted (so no value can
// run into the next line). A field added to Key is hashed with the rest; an
// omitempty one (DType) only when set.
func (k Key) canonical() string {
	var b strings.Builder
	b.WriteString(keyVersion + "\n")
	v := reflect.ValueOf(k)
	for i := range v.NumField() {
		name, opts, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if opts == "omitempty" && v.Field(i).IsZero() {
			continue // a field added later leaves the IDs made before it alone
		}
		val := fmt.Sprint(v.Field(i).Interface())
		if v.Field(i).Kind() == reflect.String {
			val = strconv.Quote(val)
		}
		b.WriteString(name + " " + val + "\n")
	}
	return b.String()
}

// checkKey is why k cannot name an entry ("" when it can).
func (k Key) checkKey() string {
	switch {
	case k.VideoSHA256 == "":
		return "the key has no video hash"
	case k.ModelID == "":
		return "the key has no model id"
	case k.Width <= 0 || k.Height <= 0:
		return fmt.Sprintf("the key's size %dx%d is not positive", k.Width, k.Height)
	case k.Start < 0 || k.Count <= 0 || k.Stride <= 0:
		return fmt.Sprintf("the key's frame range (start %d, count %d, stride %d) is invalid", k.Start, k.Count, k.Stride)
	case k.InversionSteps <= 0 || k.SaveSteps <= 0:
		return fmt.Sprintf("the key's steps (%d inversion, %d editing) are not positive", k.InversionSteps, k.SaveSteps)
	case k.DType != "" && k.DType != "fp16":
		return fmt.Sprintf("the key's dtype %q is neither fp16 nor empty (fp32)", k.DType)
	}
	return ""
}

// keyDiff says, in words, how the key got from a manifest differs from
// want ("" when equal). The folder name is want's ID, so a difference means
// the manifest was edited (or belongs to another folder).
func keyDiff(got, want Key) string {
	switch {
	case got.VideoSHA256 != want.VideoSHA256:
		return "it was made from another video (content hash differs)"
	case got.ModelID != want.ModelID:
		return "it was made with another model"
	case got.Width != want.Width || got.Height != want.Height:
		return fmt.Sprintf("it was made at size %dx%d, want %dx%d", got.Width, got.Height, want.Width, want.Height)
	case got.Start != want.Start || got.Count != want.Count || got.Stride != want.Stride:
		return fmt.Sprintf("it was made for frames start %d count %d stride %d, want start %d count %d stride %d",
			got.Start, got.Count, got.Stride, want.Start, want.Count, want.Stride)
	case got.InversionPrompt != want.InversionPrompt:
		return "it was made for another inversion prompt"
	case got.InversionSteps != want.InversionSteps:
		return fmt.Sprintf("it was made with %d inversion steps, want %d", got.InversionSteps, want.InversionSteps)
	case got.SaveSteps != want.SaveSteps:
		return fmt.Sprintf("it was made for %d editing steps, want %d", got.SaveSteps, want.SaveSteps)
	case got.FolderFPS != want.FolderFPS:
		return fmt.Sprintf("it was made at frame rate %q, want %q", got.FolderFPS, want.FolderFPS)
	case got.DType != want.DType:
		return fmt.Sprintf("it was made with %s graphs, want %s", dtypeName(got.DType), dtypeName(want.DType))
	}
	return ""
}

// dtypeName is a Key.DType in words ("" is float32).
func dtypeName(d string) string {
	if d == "" {
		return "fp32"
	}
	return d
}

// VideoInfo describes the input video in the manifest (for people reading
// it; the key holds what decides reuse).
type VideoInfo struct {
	Path     string `json:"path"`
	FPS      string `json:"fps"`
	Frames   int    `json:"frames"`
	Width    int    `json:"width"`
	Height   int    `json:"height"`
	HasAudio bool   `json:"has_audio"`
}

// ModelInfo describes the model in the manifest.
type ModelInfo struct {
	Ref string `json:"ref"` // the model as the user named it
	Dir string `json:"dir"` // the folder it resolved to
	ID  string `json:"id"`  // same as Key.ModelID
}

// Manifest is manifest.json: what an entry holds and what made it.
type Manifest struct {
	Format int       `json:"format"` // Format
	Key    Key       `json:"key"`
	Video  VideoInfo `json:"video"`
	Model  ModelInfo `json:"model"`
	// Kept is the kept timesteps, ascending; each has a noisy_latents_<t>.
	Kept []int `json:"kept_timesteps"`
	// Latent is the shape [N,C,h,w] of every stored tensor.
	Latent [4]int64 `json:"latent_shape"`
	Tool   string   `json:"tool_version"` // version.Version of the writer
	// Numerics is the writer's Numerics; an entry of other numerics is
	// rebuilt (0: written before numerics were recorded).
	Numerics int       `json:"numerics"`
	Created  time.Time `json:"created"`
	// LatentsCRC is the CRC-32C (Castagnoli) of latents.safetensors, 8 hex
	// digits; LatentsSize its size in bytes.
	LatentsCRC  string `json:"latents_crc32c"`
	LatentsSize int64  `json:"latents_size"`
}

// check is why m cannot describe an entry for key k ("" when it can):
// every consistency rule except the file's size and CRC.
func (m *Manifest) check(k Key) string {
	if m.Format != Format {
		return fmt.Sprintf("manifest.json has format %d, want %d", m.Format, Format)
	}
	if m.Numerics != Numerics {
		tool := cmp.Or(m.Tool, "(version not recorded)")
		return fmt.Sprintf("it was made by tokenflow %s with other numerics (%d, want %d)", oneLine(tool), m.Numerics, Numerics)
	}
	if d := keyDiff(m.Key, k); d != "" {
		return "manifest.json does not match its folder: " + d
	}
	if m.Model.ID != "" && m.Model.ID != m.Key.ModelID {
		return "manifest.json names two different model ids"
	}
	s := m.Latent
	n := int64(1)
	for _, d := range s {
		if d <= 0 || d > maxElements/n {
			return fmt.Sprintf("manifest.json has an invalid latent shape %v", s)
		}
		n *= d
	}
	if s[0] != int64(k.Count) {
		return fmt.Sprintf("manifest.json has latents for %d frames, the key says %d", s[0], k.Count)
	}
	// The VAE divides each side by 8; for sides that are not multiples of 8
	// the rounding is the model's business, so only the exact case is checked.
	if (k.Height%8 == 0 && s[2] != int64(k.Height/8)) || (k.Width%8 == 0 && s[3] != int64(k.Width/8)) {
		return fmt.Sprintf("manifest.json has latents of %dx%d, not %dx%d/8", s[3], s[2], k.Width, k.Height)
	}
	if len(m.Kept) == 0 {
		return "manifest.json has no kept timesteps"
	}
	for i, t := range m.Kept {
		if t < 0 || (i > 0 && t <= m.Kept[i-1]) {
			return "manifest.json's kept timesteps are not unique, non-negative and ascending"
		}
	}
	if len(m.Kept) > k.InversionSteps {
		return fmt.Sprintf("manifest.json keeps %d timesteps out of %d inversion steps", len(m.Kept), k.InversionSteps)
	}
	if !crcPattern.MatchString(m.LatentsCRC) || m.LatentsSize <= 0 {
		return "manifest.json has no valid CRC and size for latents.safetensors"
	}
	return ""
}

// tensorNames is every tensor name an entry with these kept timesteps
// holds.
func tensorNames(kept []int) []string {
	names := []string{z0Tensor}
	for _, t := range kept {
		names = append(names, noisyName(t))
	}
	return names
}

func noisyName(t int) string { return noisyPrefix + strconv.Itoa(t) }

// checkTensors is why the header of f does not match m ("" when it
// does): exactly the tensors of tensorNames, each F32 of shape m.Latent.
func checkTensors(f *safetensors.File, m *Manifest) string {
	want := tensorNames(m.Kept)
	for _, name := range want {
		ti, err := f.Info(name)
		if err != nil {
			return fmt.Sprintf("latents.safetensors has no tensor %q", name)
		}
		if ti.DType != safetensors.F32 {
			return fmt.Sprintf("latents.safetensors: tensor %q is %s, want F32", name, ti.DType)
		}
		if !slices.Equal(ti.Shape, m.Latent[:]) {
			return fmt.Sprintf("latents.safetensors: tensor %q has shape %v, want %v", name, ti.Shape, m.Latent)
		}
	}
	if f.Len() != len(want) {
		for _, name := range f.Names() {
			if !slices.Contains(want, name) {
				return fmt.Sprintf("latents.safetensors has an unexpected tensor %q", name)
			}
		}
	}
	return ""
}

// Latents is what an inversion produces: z0 and z_t for every kept
// timestep t, all of one shape [N,C,h,w].
type Latents struct {
	Z0    tensor.Tensor         // "latents"
	Noisy map[int]tensor.Tensor // timestep -> z_t ("noisy_latents_<t>")
}

// Root is the cache's root folder: dir when given, else $TOKENFLOW_CACHE,
// else "tokenflow" in the user cache folder (os.UserCacheDir). Inversions
// live under <root>/inversions/<id>/. The folder is not created here; StoreContext
// does that.
func Root(dir string) (string, error) {
	if dir := cmp.Or(dir, os.Getenv("TOKENFLOW_CACHE")); dir != "" {
		return filepath.Clean(dir), nil
	}
	user, err := os.UserCacheDir()
	if err != nil {
		return "", param.Reasonf("cache_dir", "no default cache folder (%v): name one, or set TOKENFLOW_CACHE", err)
	}
	return filepath.Join(user, "tokenflow"), nil
}

// Dir is the folder of k's entry under root.
func Dir(root string, k Key) string {
	return filepath.Join(root, subdir, k.ID())
}

// Entry is a valid cache entry.
type Entry struct {
	Dir      string
	Manifest Manifest
}

// ReconstructionPath is where the entry's reconstruction video goes.
func (e *Entry) ReconstructionPath() string {
	return filepath.Join(e.Dir, reconstructionName)
}

// LookupContext returns the entry for k when one exists and is valid. When
// there is none, it returns (nil, "", nil). When one exists but cannot be
// used, it returns (nil, reason, nil) with a one-line reason, for the caller
// to print as "inversion cache <dir>: <reason>; rebuilding". Only I/O errors
// other than not-exist are returned as err.
//
// LookupContext reads latents.safetensors once in full to check its CRC;
// that read (gigabytes for a long video) stops when ctx ends, with ctx's
// error.
func LookupContext(ctx context.Context, root string, k Key) (*Entry, string, error) {
	dir := Dir(root, k)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", nil
	case err != nil:
		return nil, "", fmt.Errorf("inversion cache %s: %w", dir, err)
	case !st.IsDir():
		return nil, "it is not a folder", nil
	}
	m, reason, err := readManifest(dir)
	if err != nil || reason != "" {
		return nil, reason, err
	}
	if reason := m.check(k); reason != "" {
		return nil, reason, nil
	}
	reason, err = checkLatents(ctx, filepath.Join(dir, latentsName), m)
	if err != nil || reason != "" {
		return nil, reason, err
	}
	return &Entry{Dir: dir, Manifest: *m}, "", nil
}

// readManifest parses dir's manifest.json; a missing or malformed one is
// a reason, not an error.
func readManifest(dir string) (*Manifest, string, error) {
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "manifest.json is missing", nil
	case err != nil:
		return nil, "", fmt.Errorf("inversion cache %s: %w", dir, err)
	}
	if !json.Valid(data) {
		return nil, "manifest.json is not valid JSON", nil
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Sprintf("manifest.json is not a manifest (%s)", oneLine(err.Error())), nil
	}
	return &m, "", nil
}

// checkLatents checks the file at path against m: size, CRC, then the
// tensor header.
func checkLatents(ctx context.Context, path string, m *Manifest) (string, error) {
	fh, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "latents.safetensors is missing", nil
	case err != nil:
		return "", fmt.Errorf("inversion cache: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return "", fmt.Errorf("inversion cache: %w", err)
	}
	if size := st.Size(); size != m.LatentsSize {
		if size < m.LatentsSize {
			return fmt.Sprintf("latents.safetensors is truncated (%d bytes, manifest says %d)", size, m.LatentsSize), nil
		}
		return fmt.Sprintf("latents.safetensors has %d bytes, manifest says %d", size, m.LatentsSize), nil
	}
	h := crc32.New(crcTable)
	bad, n, err := firstNonFinite(io.TeeReader(ctxio.Reader(ctx, fh), h))
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	if err != nil {
		return "", fmt.Errorf("inversion cache: read %s: %w", path, err)
	}
	if n != m.LatentsSize {
		return fmt.Sprintf("latents.safetensors changed size while being read (%d bytes, manifest says %d)", n, m.LatentsSize), nil
	}
	if got := fmt.Sprintf("%08x", h.Sum32()); got != m.LatentsCRC {
		return fmt.Sprintf("latents.safetensors is corrupt (CRC-32C %s, manifest says %s)", got, m.LatentsCRC), nil
	}
	f, err := safetensors.NewReader(fh, n, latentsName)
	if err != nil {
		return oneLine(err.Error()), nil
	}
	if reason := checkTensors(f, m); reason != "" {
		return reason, nil
	}
	if bad >= 0 {
		return nonFiniteReason(f, m, bad), nil
	}
	return "", nil
}

// firstNonFinite reads a safetensors file from r to its end (alongside
// its CRC, so at no extra read) and returns the file offset of the first
// float32 NaN or Inf in its data (all-ones exponent bits; -1 if none) and
// the bytes read. Every tensor of an entry is F32 (checked separately), so
// the data section is a run of float32 words. A file too short for its
// header is read to its end without a scan.
func firstNonFinite(r io.Reader) (bad, n int64, err error) {
	bad = -1
	var hdr [8]byte
	k, err := io.ReadFull(r, hdr[:])
	n = int64(k)
	if err == nil {
		var skipped int64
		skipped, err = io.CopyN(io.Discard, r, int64(min(binary.LittleEndian.Uint64(hdr[:]), uint64(maxElements))))
		n += skipped
	}
	// The data, in chunks of whole words from its start.
	buf := make([]byte, 1<<20)
	for err == nil {
		k, err = io.ReadFull(r, buf)
		for i := 0; i+4 <= k && bad < 0; i += 4 {
			if binary.LittleEndian.Uint32(buf[i:])&0x7f800000 == 0x7f800000 {
				bad = n + int64(i)
			}
		}
		n += int64(k)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return bad, n, err
}

// nonFiniteReason names the tensor and frame holding the NaN or Inf at
// file offset off.
func nonFiniteReason(f *safetensors.File, m *Manifest, off int64) string {
	for _, ti := range f.Tensors() {
		if off >= ti.Offset && off < ti.Offset+ti.Length && m.Latent[0] > 0 {
			frame := (off - ti.Offset) / (ti.Length / m.Latent[0])
			return fmt.Sprintf("latents.safetensors: tensor %q holds NaN or infinite values (frame %d), from a run that went wrong", ti.Name, frame)
		}
	}
	return "latents.safetensors holds NaN or infinite values, from a run that went wrong"
}

// Load reads all of the entry's latents into memory (tests and tools;
// an edit reads them one timestep at a time through Open).
func (e *Entry) Load() (*Latents, error) {
	r, err := e.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	ctx := context.Background()
	l := &Latents{Noisy: make(map[int]tensor.Tensor, len(e.Manifest.Kept))}
	if l.Z0, err = r.Latents(ctx); err != nil {
		return nil, err
	}
	for _, t := range e.Manifest.Kept {
		if l.Noisy[t], err = r.At(ctx, t); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// StoreContext writes a new entry for m.Key holding l, atomically (Begin,
// WriteZ0, Append, Commit: see Partial). It fills in m's Format, Kept
// (from l.Noisy; a Kept already set must agree), Latent (l.Z0's shape), Tool
// and Created (when zero), LatentsCRC and LatentsSize. It is for latents
// already in memory (tests, tools); an inversion streams its own through a
// Partial.
//
// The caller holds the entry's Lock. A valid entry already there is kept
// and returned, unless replace; an invalid one, or the one replaced, is
// moved aside only once the new one is complete, then removed. Nothing
// partial is ever visible under the final name. Writing stops when ctx
// ends, with ctx's error; nothing of it stays.
func StoreContext(ctx context.Context, root string, m Manifest, l *Latents, replace bool) (*Entry, error) {
	if l == nil {
		return nil, errors.New("inversion cache: store: no latents")
	}
	if err := fillManifest(&m, l); err != nil {
		return nil, err
	}
	parent := filepath.Join(root, subdir)
	if err := os.MkdirAll(parent, 0o777); err != nil {
		return nil, writeError(root, err)
	}
	cleanTemps(parent, m.Key.ID(), time.Now())
	if !replace {
		if e, _, err := LookupContext(ctx, root, m.Key); err != nil || e != nil {
			return e, err
		}
	}
	p, _, err := Begin(ctx, root, m, Options{NoResume: true})
	if err != nil {
		return nil, err
	}
	e, err := func() (*Entry, error) {
		if err := p.WriteZ0(ctx, l.Z0); err != nil {
			return nil, err
		}
		for _, t := range m.Kept {
			if err := p.Append(ctx, t, l.Noisy[t]); err != nil {
				return nil, err
			}
		}
		return p.Commit(ctx, replace)
	}()
	if err != nil {
		p.Discard()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return e, nil
}

// fillManifest completes m from l and checks the two agree.
func fillManifest(m *Manifest, l *Latents) error {
	if reason := m.Key.checkKey(); reason != "" {
		return fmt.Errorf("inversion cache: store: %s", reason)
	}
	kept := slices.Sorted(maps.Keys(l.Noisy))
	if m.Kept != nil && !slices.Equal(m.Kept, kept) {
		return fmt.Errorf("inversion cache: store: manifest keeps timesteps %v, the latents have %v", m.Kept, kept)
	}
	if len(l.Z0.Shape) != 4 {
		return fmt.Errorf("inversion cache: store: z0 has shape %v, want [N,C,h,w]", l.Z0.Shape)
	}
	m.Kept = kept
	m.Latent = [4]int64(l.Z0.Shape)
	if err := prepare(m); err != nil {
		return err
	}
	n := int(m.Latent[0] * m.Latent[1] * m.Latent[2] * m.Latent[3]) // bounded by check
	// Latents that went NaN or infinite are a failed run, never an entry.
	check := func(name string, z tensor.Tensor) error {
		if len(z.Data) != n || !tensor.SameShape(z, l.Z0) {
			return fmt.Errorf("inversion cache: store: %s has %d values of shape %v, want %d of shape %v", name, len(z.Data), z.Shape, n, m.Latent)
		}
		if bad := z.Finite(); bad >= 0 {
			return fmt.Errorf("inversion cache: store: %s holds %w (frame %d): not stored", name, tensor.ErrNonFinite, bad/z.RowSize())
		}
		return nil
	}
	if err := check("z0", l.Z0); err != nil {
		return err
	}
	for _, t := range kept {
		if err := check(fmt.Sprintf("z_%d", t), l.Noisy[t]); err != nil {
			return err
		}
	}
	return nil
}

// cleanTemps removes, best effort, from dir: replaced entries of any age,
// the temporary folders of entry id (whose lock the caller holds, so no
// live run is filling them), and other entries' temporary folders older
// than tempMaxAge.
func cleanTemps(dir, id string, now time.Time) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		m := tempPattern.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if m[1] == "tmp" && !strings.HasPrefix(e.Name(), "."+id+".") {
			info, err := e.Info()
			if err != nil || now.Sub(info.ModTime()) < tempMaxAge {
				continue
			}
		}
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// writeError turns a failure to write under root into one line naming
// the folder and what to do. The cause stays wrapped for errors.Is.
func writeError(root string, err error) error {
	cause := atomicfile.Cause(err)
	switch {
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS):
		return param.Errorf("cache_dir", root, "is not writable (%s: %w): use another", failedPath(err, root), cause)
	case errors.Is(err, syscall.ENOSPC):
		return param.Errorf("cache_dir", root, "is full (%w): free some space or use another", cause)
	case errors.Is(err, syscall.ENOTDIR):
		return param.Errorf("cache_dir", root, "is not usable (%s: %w): use another", failedPath(err, root), cause)
	}
	return param.Errorf("cache_dir", root, "%s: %w", failedPath(err, root), cause)
}

// failedPath is the folder an error is about, for messages: the
// *PathError's path, or for atomicfile errors their folder.
func failedPath(err error, root string) string {
	var ae *atomicfile.Error
	if errors.As(err, &ae) {
		return filepath.Dir(ae.Path)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.New
	}
	return root
}

// oneLine keeps a message on one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}

// Prepare makes root's inversions folder, so that a cache that cannot be
// written is found before any work is done for it.
func Prepare(root string) error {
	if err := os.MkdirAll(filepath.Join(root, subdir), 0o755); err != nil {
		return writeError(root, err)
	}
	return nil
}
