# Two commands do all set-up on a fresh machine:  make demo   and   make test
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xhisto-installed
# torch/torchvision pinned to the releases that ship as local wheels on our machines
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
SYS_PKGS := xvfb xauth libgl1-mesa-dri libegl1 libglx-mesa0 libxkbcommon-x11-0 libxcb-icccm4 \
	libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
	libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1
DEMO_OUT ?= demo_out

.PHONY: install sysdeps test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[all,testing]"
	touch $(STAMP)

install: $(STAMP)

# Xvfb + Mesa for napari's OpenGL canvas, through apt where missing and permitted (root or sudo).
sysdeps:
	@if ! command -v xvfb-run >/dev/null || ! ldconfig -p | grep -q libxkbcommon-x11; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ]; then echo "xvfb-run missing and no root: viewer tests will be skipped"; \
	  else $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYS_PKGS) >/dev/null; fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/npe2 validate napari-xhisto --imports

test: $(STAMP) sysdeps lint
	@if command -v xvfb-run >/dev/null; then \
	  xvfb-run -a -s "-screen 0 1600x1200x24" $(PY) -m pytest -q tests; \
	else $(PY) -m pytest -q tests -m "not viewer"; fi

# Opens napari with the demo slide, bundled model and widgets; headless (outputs in $(DEMO_OUT)) without a display.
demo: $(STAMP)
	@if [ -n "$$DISPLAY" ] || [ -n "$$WAYLAND_DISPLAY" ]; then \
	  $(VENV)/bin/xhisto demo --out $(DEMO_OUT); \
	else $(VENV)/bin/xhisto demo --headless --out $(DEMO_OUT); fi

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
