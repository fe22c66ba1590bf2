package inversion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/tokenflow/tokenflow/internal/progress"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/version"
	"github.com/tokenflow/tokenflow/internal/video"
)

// Request is one clip to invert (or to find inverted in the cache).
type Request struct {
	Input           string
	FolderFPS       video.Rational // frame rate of a frame folder (zero: 10, as the official tool writes)
	Size            video.Size     // zero: video.DefaultSize of the displayed size
	Range           video.Range
	InversionPrompt string
	Steps           int // inversion steps
	SaveSteps       int // editing schedule length
	BatchSize       int
	Reconstruct     bool // also write reconstruction.mp4
	Force           bool // recompute even when a valid entry exists
	CacheRoot       string
	ModelRef        string    // --model as given, for the manifest
	Log             io.Writer // one-line notes (why a cache entry is rebuilt)
	Progress        io.Writer // progress bars or lines (stderr); nil for none
	// NeedLatents makes Run return the latents even when it reuses an entry.
	NeedLatents bool
}

// Result is what Run did.
type Result struct {
	Entry      *Entry
	Reused     bool
	Info       video.Info
	Range      video.Range // resolved
	Size       video.Size
	Latents    *Latents // nil when reused and not NeedLatents
	UNetFrames int64    // UNet frame evaluations this run made
	Timings    map[string]time.Duration
}

// DefaultFolderFPS is the frame rate assumed for a folder of frames.
var DefaultFolderFPS = video.Rational{Num: 10, Den: 1}

// Run finds the inversion req asks for in the cache, or computes and stores
// it. Nothing is stored unless the inversion completed: an interrupted run
// leaves nothing a later run accepts.
func Run(ctx context.Context, p *sd.Pipeline, req Request) (*Result, error) {
	if req.Steps < 1 {
		return nil, fmt.Errorf("--steps %d: must be at least 1", req.Steps)
	}
	if req.BatchSize < 1 {
		return nil, fmt.Errorf("--batch-size %d: must be at least 1", req.BatchSize)
	}
	if _, err := p.Scheduler.PlanInversion(req.Steps, req.SaveSteps); err != nil {
		return nil, err
	}
	res := &Result{Timings: map[string]time.Duration{}}
	startUNet := p.UNetFrames()
	defer func() { res.UNetFrames = p.UNetFrames() - startUNet }()
	t0 := time.Now()

	fps := req.FolderFPS
	if fps.Num == 0 {
		fps = DefaultFolderFPS
	}
	info, err := video.Probe(ctx, req.Input, video.FolderFPS(fps))
	if err != nil {
		return nil, err
	}
	r, err := req.Range.Resolve(info)
	if err != nil {
		return nil, err
	}
	size := req.Size
	if size.IsZero() {
		size = video.DefaultSize(info.DisplaySize())
	}
	res.Info, res.Range, res.Size = info, r, size
	sum, err := hashInput(req.Input, info.Folder)
	if err != nil {
		return nil, err
	}
	key := Key{VideoSHA256: sum, ModelID: p.ID(), Width: size.W, Height: size.H, Start: r.Start, Count: r.Count, Stride: r.Stride,
		InversionPrompt: req.InversionPrompt, InversionSteps: req.Steps, SaveSteps: req.SaveSteps}
	if info.Folder {
		key.FolderFPS = fps.String()
	}
	res.Timings["probe+hash"] = time.Since(t0)
	// The cache must be writable before any work is done for it.
	if err := os.MkdirAll(filepath.Join(req.CacheRoot, cacheSubdir), 0o755); err != nil {
		return nil, cacheWriteError(req.CacheRoot, err)
	}

	if !req.Force {
		entry, reason, err := Lookup(req.CacheRoot, key)
		if err != nil {
			return nil, err
		}
		if reason != "" && req.Log != nil {
			fmt.Fprintf(req.Log, "inversion cache %s: %s; rebuilding\n", EntryDir(req.CacheRoot, key), reason)
		}
		if entry != nil {
			res.Entry, res.Reused = entry, true
			if req.NeedLatents || (req.Reconstruct && !exists(entry.ReconstructionPath())) {
				if res.Latents, err = entry.Load(); err != nil {
					return nil, err
				}
			}
			if req.Reconstruct && !exists(entry.ReconstructionPath()) {
				if err := writeReconstruction(ctx, p, req, res); err != nil {
					return nil, err
				}
			}
			return res, nil
		}
	}

	// 1. frames -> z0
	t1 := time.Now()
	clip, err := video.DecodeAll(ctx, info, video.DecodeOptions{Size: size, Range: r})
	if err != nil {
		return nil, err
	}
	res.Timings["decode"] = time.Since(t1)
	t1 = time.Now()
	enc := progress.New(req.Progress, "encode", "frames", len(clip.Frames))
	z0, err := p.EncodeFrames(ctx, clip.Frames, enc.Set)
	enc.Finish()
	if err != nil {
		return nil, err
	}
	p.Release("vae_encoder") // not needed again: free its memory for the UNet
	res.Timings["vae encode"] = time.Since(t1)

	// 2. DDIM inversion
	t1 = time.Now()
	cond, err := p.EncodeText(ctx, req.InversionPrompt)
	if err != nil {
		return nil, err
	}
	bar := progress.New(req.Progress, "invert", "frame-steps", req.Steps*len(clip.Frames))
	lat, err := Invert(ctx, p, p.Scheduler, z0, cond, Params{Steps: req.Steps, SaveSteps: req.SaveSteps, BatchSize: req.BatchSize, Progress: func(done, _ int) { bar.Set(done) }})
	bar.Finish()
	if err != nil {
		return nil, err
	}
	res.Timings["inversion"] = time.Since(t1)

	// 3. store
	m := Manifest{Key: key, Tool: version.Version,
		Video: VideoInfo{Path: req.Input, FPS: info.FPS.String(), Frames: info.Frames, Width: info.DisplayWidth, Height: info.DisplayHeight, HasAudio: info.HasAudio},
		Model: ModelInfo{Ref: req.ModelRef, Dir: p.Dir(), ID: p.ID()}}
	if req.Force {
		// Store keeps a valid entry it finds; --force means replace it.
		if err := os.RemoveAll(EntryDir(req.CacheRoot, key)); err != nil {
			return nil, fmt.Errorf("replace cache entry: %w", err)
		}
	}
	entry, err := Store(req.CacheRoot, m, lat)
	if err != nil {
		return nil, err
	}
	res.Entry, res.Latents = entry, lat
	if req.Reconstruct {
		if err := writeReconstruction(ctx, p, req, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// writeReconstruction DDIM-samples back from the most inverted latent,
// decodes, and writes the entry's reconstruction.mp4 (atomically).
func writeReconstruction(ctx context.Context, p *sd.Pipeline, req Request, res *Result) error {
	t := time.Now()
	lat := res.Latents
	kept := res.Entry.Manifest.Kept
	zT := sd.Latents{Shape: lat.Shape, Data: lat.Noisy[kept[len(kept)-1]]}
	cond, err := p.EncodeText(ctx, req.InversionPrompt)
	if err != nil {
		return err
	}
	n := int(lat.Shape[0])
	bar := progress.New(req.Progress, "reconstruct", "frame-steps", req.Steps*n)
	x, err := Reconstruct(ctx, p, p.Scheduler, zT, cond, Params{Steps: req.Steps, BatchSize: req.BatchSize, Progress: func(done, _ int) { bar.Set(done) }})
	bar.Finish()
	if err != nil {
		return err
	}
	frames, err := p.DecodeLatents(ctx, x, nil)
	if err != nil {
		return err
	}
	clip := &video.Clip{Size: res.Size, FPS: res.Info.ClipFPS(res.Range), Range: res.Range, Frames: frames}
	if err := video.Encode(ctx, res.Entry.ReconstructionPath(), clip, video.EncodeOptions{FPS: clip.FPS, Audio: res.Info.AudioFor(res.Range)}); err != nil {
		return err
	}
	res.Timings["reconstruction"] = time.Since(t)
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// hashInput is the sha256 of a media file's bytes, or of a frame folder's
// sorted image files (names and bytes).
func hashInput(path string, folder bool) (string, error) {
	h := sha256.New()
	files := []string{path}
	if folder {
		entries, err := os.ReadDir(path)
		if err != nil {
			return "", err
		}
		files = files[:0]
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		sort.Strings(files)
	}
	for _, f := range files {
		in, err := os.Open(f)
		if err != nil {
			return "", err
		}
		if folder {
			fmt.Fprintf(h, "%s\n", filepath.Base(f))
		}
		_, err = io.Copy(h, in)
		in.Close()
		if err != nil {
			return "", fmt.Errorf("read %s: %w", f, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
