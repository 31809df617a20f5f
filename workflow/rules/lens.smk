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


# Independent validation (issue #17): a set drawn with lenstronomy only (its own priors and look-alike
# families, skysift.lens.independent), scored by the trained lens model with the unchanged `skysift score`.


rule lens_validation_set:
    output:
        product=f"{RESULTS}/lens/validation/validation_set.h5",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_lens_validation_set"),
        seed=derive_seed(config["seed"], "lens_validation_set"),
        # The job's processes are its threads (lens_validation.workers, default 2), not the node's cores.
        options=stage_flags("lens_validation", values={"workers": None}),
        provenance=provenance_flags("lens_validation_set", "lens_validation"),
    log:
        f"{LOGS}/lens_validation_set.log",
    conda:
        "../../envs/lens.yaml"
    threads: config["lens_validation"]["workers"] or 2
    resources:
        mem_mb=2000,
        runtime=20,
        cpus_per_task=config["lens_validation"]["workers"] or 2,
    shell:
        "{params.skysift} lens validation-set --out {output.product} "
        "--seed {params.seed} --workers {threads} {params.options} {params.provenance} > {log} 2>&1"


rule score_lens_validation:
    input:
        product=f"{RESULTS}/lens/validation/validation_set.h5",
        model=f"{RESULTS}/models/lens/model.pt",
        card=f"{RESULTS}/models/lens/model_card.json",
    output:
        scores=f"{RESULTS}/lens/validation/scores.h5",
        catalogue=f"{RESULTS}/lens/validation/candidates.ecsv",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.training:_score", "skysift.lens.task"),
        model_dir=lambda wildcards, input: Path(input.model).parent.as_posix(),
        provenance=provenance_flags("score_lens_validation", "train.lens"),
    log:
        f"{LOGS}/score/lens_validation.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} score --model {params.model_dir} --product {input.product} --split all "
        "--out {output.scores} --catalogue {output.catalogue} {params.provenance} > {log} 2>&1"


rule lens_validation_report:
    input:
        scores=f"{RESULTS}/lens/validation/scores.h5",
        product=f"{RESULTS}/lens/validation/validation_set.h5",
    output:
        metrics=f"{RESULTS}/lens/validation/metrics.json",
        families=report(
            f"{RESULTS}/lens/validation/families.ecsv",
            caption="../report/lens_validation_tables.rst",
            category="7. Independent lens validation",
            labels={"table": "per look-alike family"},
        ),
        snr_bins=report(
            f"{RESULTS}/lens/validation/snr_bins.ecsv",
            caption="../report/lens_validation_tables.rst",
            category="7. Independent lens validation",
            labels={"table": "per arc S/N bin"},
        ),
        roc=report(
            f"{RESULTS}/lens/validation/roc.png",
            caption="../report/lens_validation_roc.rst",
            category="7. Independent lens validation",
            labels={"figure": "ROC curve"},
        ),
        families_figure=report(
            f"{RESULTS}/lens/validation/families.png",
            caption="../report/lens_validation_families.rst",
            category="7. Independent lens validation",
            labels={"figure": "per family and per arc S/N"},
        ),
        gallery=report(
            f"{RESULTS}/lens/validation/gallery.png",
            caption="../report/lens_validation_gallery.rst",
            category="7. Independent lens validation",
            labels={"figure": "highest-scoring look-alikes"},
        ),
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_lens_validation_report"),
        outdir=lambda wildcards, output: Path(output.metrics).parent.as_posix(),
    log:
        f"{LOGS}/lens_validation_report.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "{params.skysift} lens validation-report --scores {input.scores} --product {input.product} "
        "--outdir {params.outdir} > {log} 2>&1"
