#!/usr/bin/env bash
# The throughput figures of a GPU machine in one run (budget: 8 minutes on one H100/H200-class GPU).
#
#   bash benchmarks/gpu.sh            # on a machine with a CUDA GPU
#   bash benchmarks/gpu.sh --cpu      # the same commands, reduced, on the CPU (CI runs this)
#
# Prints, each a table:
#   1. the 200-epoch LDAM-DRW schedule (CIFAR-10-LT shape: ResNet-32, batch 128, validation on
#      10,000 images every epoch) on the device-resident pipeline: wall time, images/s, error,
#      peak GPU memory — the real CIFAR-10 if $CIFAR_DIR/cifar-10-batches-py exists, else
#      synthetic tensors of its shape (nothing is downloaded);
#   2. the same with compile=True;
#   3. compiled against eager training steps: ResNet-32 recipe and a small ViT, compile time apart;
#   4. the image-file pipeline on 1,000 generated 500x375 JPEGs: torchvision ImageFolder + PIL,
#      ltlight with nvJPEG batch decoding (decoder=pil, decode_on_device) and with DALI's mixed
#      decoder (decoder=dali, decode_on_device), $WORKERS workers / threads each, peak GPU memory;
#   5. each loss's share of a whole training step on the GPU, next to cross-entropy's.
# Needs the dev environment (pip install -e '.[dev]': torch with CUDA, Lightning, DALI); no
# internet. Each stage has its share of the 8 minutes (seconds: 140, 170, 80, 70, 20); one that
# overruns it is stopped with a line saying so, and the rest still runs. The compile table
# reuses Inductor's cache from stage 2 for ResNet-32 (its compile time is then a warm cache's).
# EPOCHS, WORKERS, JPEGS, JPEG_DIR and CIFAR_DIR override the defaults.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OMP_WAIT_POLICY=PASSIVE WANDB_MODE=disabled

if [[ "${1:-}" == "--cpu" ]]; then  # every command once, small: it runs, not how fast
    device=cpu epochs=${EPOCHS:-1} workers=${WORKERS:-1} jpegs=${JPEGS:-24}
    schedule=(--images 256 --eval-batch 256)
    compile_table=(--compile-models resnet32 --steps 1 --warmup 1 --warm-cache)
    files=(--epochs 1 --file-batch-size 8)
    losses=(--repeats 5 --step-repeats 1)
    limits=(600 600 600 600 600)
else
    python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || {
        echo "no CUDA device here: run 'bash benchmarks/gpu.sh --cpu' for the reduced CPU mode"
        exit 1
    }
    device=cuda epochs=${EPOCHS:-200} workers=${WORKERS:-8} jpegs=${JPEGS:-1000}
    schedule=()
    compile_table=(--steps 30 --warmup 3 --warm-cache)
    files=(--epochs 2 --file-batch-size 128)
    losses=(--repeats 200 --step-repeats 20)
    limits=(140 170 80 70 20)
fi
cifar=()
[[ -n "${CIFAR_DIR:-}" ]] && cifar=(--data-dir "$CIFAR_DIR")
jpeg_dir=${JPEG_DIR:-/tmp/ltlight-benchmark-jpegs}

stage() {  # stage <seconds> <title> <command...>: run it under a time limit, say if it overran
    local seconds=$1 title=$2
    shift 2
    echo
    echo "## $title"
    timeout --kill-after=10 "$seconds" "$@"
    local status=$?
    if [[ $status == 124 ]]; then
        echo "(stopped after ${seconds} s: over this stage's share of the 8 minutes)"
    elif [[ $status != 0 ]]; then
        echo "(failed with status $status)"
        failed=1
    fi
}
failed=0
start=$SECONDS
python3 - <<'EOF'
import os, torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"# gpu.sh: torch {torch.__version__}, {name}, {os.cpu_count()} CPUs")
EOF

stage "${limits[0]}" "1. LDAM-DRW, $epochs epochs, device-resident pipeline" \
    python3 benchmarks/train_speed.py --device $device --paper-schedule --epochs "$epochs" \
    --skip-official "${schedule[@]}" "${cifar[@]}"
stage "${limits[1]}" "2. the same with compile=True" \
    python3 benchmarks/train_speed.py --device $device --paper-schedule --epochs "$epochs" \
    --skip-official --compile "${schedule[@]}" "${cifar[@]}"
stage "${limits[2]}" "3. compiled against eager training steps" \
    python3 benchmarks/train_speed.py --device $device --compile-table "${compile_table[@]}"
stage "${limits[3]}" "4. image files: torchvision, nvJPEG (decode_on_device), DALI mixed" \
    python3 benchmarks/data.py --files --device $device --decode-on-device --images "$jpegs" \
    --workers "$workers" --jpeg-dir "$jpeg_dir" "${files[@]}"
stage "${limits[4]}" "5. each loss's share of a training step" \
    python3 benchmarks/losses.py --step-share --device $device "${losses[@]}"
echo
echo "gpu.sh: $((SECONDS - start)) s"
exit $failed
