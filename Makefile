# refava: two commands set everything up on a fresh machine with Python 3.11:
#   make demo   - virtual environment, install, and the main job on the bundled sample corpus
#   make test   - virtual environment, install, and the whole test suite
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo

.PHONY: demo test install bench clean labelstudio fiftyone lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# imagecorruptions: a peer the tests compare with, without its dependencies (its opencv-python would shadow ours)
$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,rephrase,train,fast,ray]'
	$(BIN)/python -m pip install --quiet --no-deps imagecorruptions==1.1.2
	touch $@

install: $(VENV)/.installed

$(DEMO)/sample/.complete: | install
	$(BIN)/refava sample-corpus $(DEMO)/sample
	touch $@

demo: install $(DEMO)/sample/.complete
	test -f $(DEMO)/ws/refava.toml || $(BIN)/refava init $(DEMO)/ws --from-sample $(DEMO)/sample
	$(BIN)/refava -w $(DEMO)/ws ingest
	$(BIN)/refava -w $(DEMO)/ws annotate import $(abspath $(DEMO)/sample/annotations/labelstudio_describe_export.json)
	$(BIN)/refava -w $(DEMO)/ws annotate import $(abspath $(DEMO)/sample/annotations/labelstudio_verify_export.json) --verify-map $(abspath $(DEMO)/sample/annotations/labelstudio_verify_tasks.json)
	$(BIN)/refava -w $(DEMO)/ws annotate check
	$(BIN)/refava -w $(DEMO)/ws annotate status
	$(BIN)/refava -w $(DEMO)/ws build-splits
	$(BIN)/refava -w $(DEMO)/ws stats
	$(BIN)/refava -w $(DEMO)/ws corrupt --severity 3 --no-progress
	$(BIN)/refava -w $(DEMO)/ws corrupt --type brightness --type motion_blur --type h264_crf --type freeze --severity 3 --no-progress
	$(BIN)/refava -w $(DEMO)/ws corrupt --gallery
	$(BIN)/refava -w $(DEMO)/ws rephrase --test --no-progress
	$(BIN)/refava -w $(DEMO)/ws package --no-progress
	$(BIN)/refava -w $(DEMO)/ws package --verify $(DEMO)/ws/refava
	$(BIN)/refava -w $(DEMO)/ws verify --no-progress
	HF_HUB_OFFLINE=1 $(BIN)/refava -w $(DEMO)/ws validate-dataset
	$(BIN)/refava -w $(DEMO)/ws export --format ava
	$(BIN)/refava -w $(DEMO)/ws export --format coco
	$(BIN)/refava -w $(DEMO)/ws export --format webdataset --shard-size 5MB --no-progress
	$(BIN)/refava -w $(DEMO)/ws export --format fiftyone
	$(BIN)/refava -w $(DEMO)/ws browse --no-progress
	$(BIN)/python tools/demo_scorer.py $(DEMO)/ws/refava $(DEMO)/ws/reports/class_prior_predictions.jsonl
	$(BIN)/refava evaluate --predictions $(DEMO)/ws/reports/class_prior_predictions.jsonl --split test --dataset $(DEMO)/ws/refava
	$(BIN)/python tools/demo_scorer.py --robustness $(DEMO)/ws/refava $(DEMO)/ws/reports/knn_predictions
	$(BIN)/refava evaluate --robustness $(DEMO)/ws/reports/knn_predictions --split test --dataset $(DEMO)/ws/refava --out $(DEMO)/ws/reports/robustness
	cd $(DEMO)/ws && HF_HUB_OFFLINE=1 $(abspath $(BIN))/python -c 'import datasets; print(datasets.load_dataset("refava"))'
	$(BIN)/refava -w $(DEMO)/ws status
	@echo
	@echo "demo outputs:"
	@echo "  sample corpus:  $(abspath $(DEMO)/sample)   (movies/, annotations/)"
	@echo "  workspace:      $(abspath $(DEMO)/ws)       (refava.toml, tables/, frames/, reports/)"
	@echo "  ingest report:  $(abspath $(DEMO)/ws/reports/ingest.json)"
	@echo "  splits report:  $(abspath $(DEMO)/ws/reports/splits.md)"
	@echo "  statistics:     $(abspath $(DEMO)/ws/reports/stats.html)   (figures in reports/stats/)"
	@echo "  corruptions:    $(abspath $(DEMO)/ws/frames/corrupted)   (manifest tables/corruptions.parquet)"
	@echo "  gallery:        $(abspath $(DEMO)/ws/reports/corrupt_gallery.png)"
	@echo "  rephrasings:    $(abspath $(DEMO)/ws/tables/rephrasings.parquet)   (report reports/rephrase.json)"
	@echo "  dataset:        $(abspath $(DEMO)/ws/refava)   (README.md is the dataset card)"
	@echo "  validation:     $(abspath $(DEMO)/ws/reports/validation/report.md)   (1. does the data carry the referent: the referent probe; 2. RefAtomNet vs controls over 3 seeds)"
	@echo "  browser:        $(abspath $(DEMO)/ws/reports/browse/index.html)   (refava browse --serve)"
	@echo "  exports:        $(abspath $(DEMO)/ws/exports)   (ava/: AVA csv + SlowFast frame lists; coco/: COCO + refs;"
	@echo "                  webdataset/: tar shards; fiftyone/: tools/fiftyone.sh open $(abspath $(DEMO)/ws/exports/fiftyone))"
	@echo "  scorer:         $(abspath $(DEMO)/ws/reports/class_prior_predictions.test.metrics.json)   (a class-prior model's predictions, scored)"
	@echo "  robustness:     $(abspath $(DEMO)/ws/reports/robustness/robustness.md)   (mPC, rPC of a nearest-keyframe model over the corruption configurations; .png)"
	@echo "  load it:        cd $(abspath $(DEMO)/ws) && HF_HUB_OFFLINE=1 $(abspath $(BIN))/python -c 'import datasets; print(datasets.load_dataset(\"refava\"))'"

# Label Studio pins packages that clash with refava's: its own virtual environment, for the real-server tests
.lsvenv/bin/label-studio:
	PYTHON=$(PYTHON) tools/labelstudio.sh install

labelstudio: .lsvenv/bin/label-studio

# FiftyOne (and the MongoDB it needs) likewise: its own virtual environment, for the FiftyOne export's tests
.fovenv/bin/fiftyone:
	PYTHON=$(PYTHON) tools/fiftyone.sh install

fiftyone: .fovenv/bin/fiftyone

# structure: no function over 60 statements (ruff PLR0915), dependencies one way (import-linter's layers contract
# in setup.cfg; tests/test_structure.py also refuses any import cycle)
lint: install
	$(BIN)/ruff check refava
	$(BIN)/lint-imports

test: install labelstudio fiftyone lint
	bash tools/wheel_smoke.sh $(VENV)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python -m pip install --quiet scikit-learn scikit-image scipy
	$(BIN)/python -m pip install --quiet imageio-ffmpeg               # a static ffmpeg: the video corruptions' baseline
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/splits.py
	$(BIN)/python benchmarks/corrupt.py
	$(BIN)/python benchmarks/corrupt_video.py
	$(BIN)/python benchmarks/noise_storage.py
	$(BIN)/python benchmarks/package.py
	$(BIN)/python benchmarks/load.py
	$(BIN)/python benchmarks/export_webdataset.py
	$(BIN)/python benchmarks/rephrase.py
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info .venv-wheel
