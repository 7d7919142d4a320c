#!/usr/bin/env bash
# The wheel smoke pass (run by `make test`): build the wheel as `pip install .` would, install it into a virtual
# environment of its own, and run every command's --help and the sample pipeline through `package` there, from a
# folder outside the checkout.  It fails when a file a command reads at run time is missing from the wheel.
#
# usage: tools/wheel_smoke.sh [VENV]     (VENV: the development environment whose dependencies it borrows; .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-.venv}
SMOKE=.venv-wheel
WORK=$(mktemp -d "${TMPDIR:-/tmp}/refava-wheel-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

rm -rf "$SMOKE" build
"$DEV/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" . > "$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log" >&2; exit 1; }
python_bin=$("$DEV/bin/python" -c 'import sys; print(sys.executable)')
"$python_bin" -m venv --without-pip "$SMOKE"
# the dependencies come from the development environment (a path, not its .pth files: no editable refava)
site=$("$SMOKE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$DEV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/refava-dev-deps.pth"
"$DEV/bin/python" -m pip --python "$SMOKE/bin/python" install --quiet --no-deps "$WORK"/dist/refava-*.whl
rm -rf build

cd "$WORK"
export PATH="$OLDPWD/$SMOKE/bin:$PATH" HF_HUB_OFFLINE=1 PYTHONPATH=
where=$(python -c 'import refava, os; print(os.path.dirname(refava.__file__))')
case "$where" in *"$SMOKE"*) ;; *) echo "wheel smoke: refava imported from $where, not the wheel" >&2; exit 1 ;; esac
echo "wheel smoke: refava from $where"
refava --help > /dev/null
for cmd in $(python -c 'from refava.cli import cli; print(" ".join(sorted(cli.commands)))'); do
  refava "$cmd" --help > /dev/null
done
for sub in $(python -c 'from refava.cli import cli; print(" ".join(sorted(cli.commands["annotate"].commands)))'); do
  refava annotate "$sub" --help > /dev/null
done
python -c 'from refava.annotate.labelstudio import config_path as c; [c(s) for s in ("describe", "verify")]'
python -c 'import importlib.resources as r; assert r.files("refava.annotate").joinpath("configs/guidelines.md").is_file()'
refava sample-corpus sample --seconds 8 > /dev/null
refava init ws --from-sample sample > /dev/null
cd ws
refava ingest --no-progress > /dev/null
refava annotate import ../sample/annotations/labelstudio_describe_export.json > /dev/null
refava annotate import ../sample/annotations/labelstudio_verify_export.json --verify-map ../sample/annotations/labelstudio_verify_tasks.json > /dev/null
refava annotate check > /dev/null
refava build-splits > /dev/null
refava stats > /dev/null
refava corrupt --type fog --severity 1 --no-progress > /dev/null
refava rephrase --test --dry-run > /dev/null          # loads the prompt template shipped in the wheel
refava package --no-progress > /dev/null
refava package --verify refava > /dev/null
refava export --format coco --no-images > /dev/null          # interop, from the wheel: export, browser, loader
refava browse --no-progress > /dev/null
test -s reports/browse/index.html && test -s reports/browse/rows.js
python -c 'from refava.loader import RefAVAFrames; d = RefAVAFrames("refava", split="train"); assert d[0]["keyframe"].ndim == 3'
refava verify --no-progress > /dev/null
refava status
echo "wheel smoke: OK (every --help, sample-corpus through package, export, browse and the loader, from the installed wheel)"
