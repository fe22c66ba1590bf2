package models

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
)

// TestSingleFileVPrediction: the tiny SD 2.x file with its 768-v YAML
// (parameterization: "v", as v2-inference-v.yaml) is accepted and read as
// the SD 2.x 768 models convert in diffusers: v_prediction, sample_size 96;
// everything else as with the plain YAML.
func TestSingleFileVPrediction(t *testing.T) {
	path := singlePath(t, "tiny-sd21-ldm", ".safetensors")
	c, err := OpenModel(path, OpenOptions{OriginalConfig: fixture.Path(t, "vprediction", "tiny-sd21-ldm-v.yaml"), CacheRoot: t.TempDir()})
	if err != nil {
		t.Fatalf("the 768-v YAML is refused: %v", err)
	}
	cfg, err := c.SchedulerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PredictionType != "v_prediction" {
		t.Errorf("prediction_type %q, want v_prediction", cfg.PredictionType)
	}
	u, err := c.UNetConfig()
	if err != nil {
		t.Fatal(err)
	}
	if u.SampleSize != 96 {
		t.Errorf("unet sample_size %d, want 96 (768 pixels)", u.SampleSize)
	}
	plain := openSingle(t, "tiny-sd21-ldm")
	pcfg, err := plain.SchedulerConfig()
	if err != nil {
		t.Fatal(err)
	}
	pcfg.PredictionType = cfg.PredictionType
	if pcfg.BetaStart != cfg.BetaStart || pcfg.BetaEnd != cfg.BetaEnd || pcfg.NumTrainTimesteps != cfg.NumTrainTimesteps || pcfg.StepsOffset != cfg.StepsOffset {
		t.Errorf("schedule %+v, want the plain YAML's %+v but for the prediction type", cfg, pcfg)
	}
}
