#!/usr/bin/env bash
# Train every Table 1 config for the same number of steps, test it, and print
# the results table.
#
# Usage: bash scripts/table1.sh [STEPS] [DATA_ROOT] [OUT_DIR] [TEST_BATCHES]
#   STEPS         training steps per model (default 1500)
#   DATA_ROOT     folder containing MNIST/raw (default data)
#   OUT_DIR       where the runs go (default runs/table1)
#   TEST_BATCHES  test batches of 8 sequences per model (default 1.0: all)
set -euo pipefail

steps="${1:-1500}"
root="${2:-data}"
out="${3:-runs/table1}"
test_batches="${4:-1.0}"
configs_dir="$(dirname "$0")/../configs/table1"

for config in "$configs_dir"/*.yaml; do
    name="$(basename "$config" .yaml)"
    echo "== $name: fit $steps steps"
    tvae-cli fit --config "$config" --data.root "$root" \
        --trainer.max_steps "$steps" --trainer.limit_val_batches 0 \
        --trainer.enable_progress_bar false \
        --trainer.logger.class_path lightning.pytorch.loggers.TensorBoardLogger \
        --trainer.logger.init_args.save_dir "$out" \
        --trainer.logger.init_args.name "$name" \
        --trainer.logger.init_args.version fit

    echo "== $name: test"
    tvae-cli test --config "$config" --data.root "$root" \
        --ckpt_path "$out/$name/fit/checkpoints/last.ckpt" \
        --trainer.limit_test_batches "$test_batches" \
        --trainer.enable_progress_bar false \
        --trainer.logger.class_path lightning.pytorch.loggers.TensorBoardLogger \
        --trainer.logger.init_args.save_dir "$out" \
        --trainer.logger.init_args.name "$name" \
        --trainer.logger.init_args.version test
done

tvae-cli-results "$out"/*/test
