# Stop 25, round 5 (round 4's machine): one timeline each at 448x448, run as two calls:
. $HOME/mlx/env.sh; bash bench/gpu/setup.sh > /dev/null; cd bench/gpu; export VLM_BENCH_HOME=$HOME/vlm-bench; M=$HOME/models/qwen3-vl-8b-4; W=/tmp/w; mkdir -p $W
VLM_BENCH_TIMELINE=$W/tl timeout 150 ./host bench decode --model $M --paths steps-graph-c16vo --resolutions 448x448 --repeats 1 > $W/tl.txt 2>&1
# then the same with --paths steps-graph (tl-default); summaries: timeline.py FILE, --phases FILE, --layer 10 FILE
