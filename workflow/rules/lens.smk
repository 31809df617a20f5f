# Stage: strong-lens training set (batched PyTorch simulator).


rule lens_training_set:
    output:
        product=f"{RESULTS}/lens/training_set.h5",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_lens_simulate"),
        seed=derive_seed(config["seed"], "lens_training_set"),
        options=stage_flags("lens"),
        provenance=provenance_flags("lens_training_set", "lens"),
    log:
        f"{LOGS}/lens_training_set.log",
    conda:
        "../../envs/lens.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
        cpus_per_task=2,
    shell:
        "{params.skysift} lens simulate --out {output.product} "
        "--seed {params.seed} {params.options} {params.provenance} > {log} 2>&1"
