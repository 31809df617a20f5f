# Stage: transit training set (injections into simulated light curves, AstroNet views).


rule transit_training_set:
    output:
        product=f"{RESULTS}/transit/training_set.h5",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_transit_simulate"),
        seed=derive_seed(config["seed"], "transit_training_set"),
        options=stage_flags("transit"),
        dask=dask_flags(),
        provenance=provenance_flags("transit_training_set", "transit"),
    log:
        f"{LOGS}/transit_training_set.log",
    conda:
        "../../envs/transit.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
        cpus_per_task=2,
    shell:
        "{params.skysift} transit simulate --out {output.product} "
        "--seed {params.seed} {params.options} {params.dask} {params.provenance} > {log} 2>&1"
