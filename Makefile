# Two entry points: `make demo` and `make test`. Both create .venv on first use and are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
POSEKIT_TEST_DATA ?= ../shared/data
DEMO_OUT ?= outputs/demo

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/posekit weights fetch
	$(VENV)/bin/posekit predict assets/demo.jpg --render --exist-ok --out $(DEMO_OUT) && \
	echo "results: $(DEMO_OUT)/results.json (COCO keypoint results)" && \
	echo "render:  $(DEMO_OUT)/render/demo.jpg (photo: assets/LICENSE-demo.txt)"

test: $(STAMP)
	POSEKIT_TEST_DATA=$(POSEKIT_TEST_DATA) $(PY) -m pytest -q -rs  # -rs: the reason of every skipped test

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs
