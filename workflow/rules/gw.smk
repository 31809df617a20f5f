# Stage: gravitational waves. Training set of whitened H1/L1 samples; MLGWSC-1 test data
# (foreground with injections every 24 +- 3 s, background without); the trained network and
# the matched-filter baseline search both; sensitive distance versus false-alarm rate.


rule gw_training_set:
    output:
        product=f"{RESULTS}/gw/training_set.h5",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_gw_simulate"),
        seed=derive_seed(config["seed"], "gw_training_set"),
        options=stage_flags("gw"),
        dask=dask_flags(),
        provenance=provenance_flags("gw_training_set", "gw"),
    log:
        f"{LOGS}/gw_training_set.log",
    conda:
        "../../envs/gw.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
        cpus_per_task=2,
    shell:
        "{params.skysift} gw simulate --out {output.product} --seed {params.seed} "
        "{params.options} {params.dask} {params.provenance} > {log} 2>&1"


rule gw_test_data:
    output:
        foreground=f"{RESULTS}/gw/test/foreground.hdf",
        background=f"{RESULTS}/gw/test/background.hdf",
        injections=f"{RESULTS}/gw/test/injections.hdf",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_gw_testdata"),
        outdir=lambda wildcards, output: Path(output.foreground).parent,
        seed=derive_seed(config["seed"], "gw_test_data"),
        options=stage_flags("gw"),
        provenance=provenance_flags("gw_test_data", "gw"),
    log:
        f"{LOGS}/gw_test_data.log",
    conda:
        "../../envs/gw.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{params.skysift} gw testdata --outdir {params.outdir} --seed {params.seed} {params.options} "
        "{params.provenance} > {log} 2>&1"


rule gw_search:
    input:
        strain=f"{RESULTS}/gw/test/{{which}}.hdf",
        model=f"{RESULTS}/models/gw/model.pt",
        card=f"{RESULTS}/models/gw/model_card.json",
    output:
        events=f"{RESULTS}/gw/events/network_{{which}}.hdf",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_gw_search", "skysift.gw.task"),
        model_dir=lambda wildcards, input: Path(input.model).parent,
        options=stage_flags("gw", keys=("search_step", "search_edge", "gate_threshold")),
        provenance=provenance_flags("gw_search", "gw", "train.gw"),
    wildcard_constraints:
        which="foreground|background",
    log:
        f"{LOGS}/gw_search/network_{{which}}.log",
    conda:
        "../../envs/gw.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        cpus_per_task=2,
    shell:
        "{params.skysift} gw search --strain {input.strain} --out {output.events} --model {params.model_dir} "
        "{params.options} {params.provenance} > {log} 2>&1"


rule gw_matched_filter:
    input:
        strain=f"{RESULTS}/gw/test/{{which}}.hdf",
    output:
        events=f"{RESULTS}/gw/events/matched_filter_{{which}}.hdf",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_gw_search"),
        options=stage_flags("gw", keys=("mass_min", "mass_max", "bank_chirp_masses", "bank_mass_ratios", "gate_threshold")),
        provenance=provenance_flags("gw_matched_filter", "gw"),
    wildcard_constraints:
        which="foreground|background",
    log:
        f"{LOGS}/gw_search/matched_filter_{{which}}.log",
    conda:
        "../../envs/gw.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        cpus_per_task=2,
    shell:
        "{params.skysift} gw search --strain {input.strain} --out {output.events} --matched-filter "
        "{params.options} {params.provenance} > {log} 2>&1"


rule gw_sensitivity:
    input:
        network_fg=f"{RESULTS}/gw/events/network_foreground.hdf",
        network_bg=f"{RESULTS}/gw/events/network_background.hdf",
        mf_fg=f"{RESULTS}/gw/events/matched_filter_foreground.hdf",
        mf_bg=f"{RESULTS}/gw/events/matched_filter_background.hdf",
        injections=f"{RESULTS}/gw/test/injections.hdf",
        background=f"{RESULTS}/gw/test/background.hdf",
    output:
        summary=f"{RESULTS}/gw/sensitivity.json",
        plot=report(
            f"{RESULTS}/gw/sensitivity.png",
            caption="../report/gw_sensitivity.rst",
            category="7. Gravitational waves",
            labels={"figure": "sensitive distance vs FAR"},
        ),
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_gw_evaluate"),
        options=stage_flags("gw", keys=("max_distance",)),
        outdir=lambda wildcards, output: Path(output.summary).parent,
    log:
        f"{LOGS}/gw_sensitivity.log",
    conda:
        "../../envs/gw.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} gw evaluate --search network {input.network_fg} {input.network_bg} "
        "--search matched-filter {input.mf_fg} {input.mf_bg} --injections {input.injections} "
        "--background-strain {input.background} {params.options} --outdir {params.outdir} > {log} 2>&1"
