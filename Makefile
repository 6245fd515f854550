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
	$(VENV)/bin/posekit weights verify
	@if [ -d "$(POSEKIT_TEST_DATA)/coco-mini/train2017" ]; then \
		input="$(POSEKIT_TEST_DATA)/coco-mini/train2017"; model=topdown-thunder; \
	else \
		echo "shared data not found at $(POSEKIT_TEST_DATA): using a generated image of two drawn people"; \
		echo "(movenet-multipose: the CenterNet detector of the top-down default sees only their heads)"; \
		$(PY) tools/make_demo_image.py outputs/demo-input.jpg; input=outputs/demo-input.jpg; model=movenet-multipose; \
	fi; \
	$(VENV)/bin/posekit predict "$$input" --model $$model --render --out $(DEMO_OUT) && \
	echo "results: $(DEMO_OUT)/results.json (COCO keypoint results)" && \
	echo "renders: $(DEMO_OUT)/render/"

test: $(STAMP)
	POSEKIT_TEST_DATA=$(POSEKIT_TEST_DATA) $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs
