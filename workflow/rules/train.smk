# Stage: training and inference with the shared trainer, for every enabled task.
# GPU jobs request `gpu`/`cpus_per_gpu` (a GPU model is site specific: set it in a profile); several GPUs run
# DDP through `skysift launch`, which uses srun inside SLURM and torchrun elsewhere.


rule train:
    input:
        product=f"{RESULTS}/{{task}}/training_set.h5",
    output:
        model=f"{RESULTS}/models/{{task}}/model.pt",
        card=f"{RESULTS}/models/{{task}}/model_card.json",
        metrics=f"{RESULTS}/models/{{task}}/metrics.csv",
        curve=report(
            f"{RESULTS}/models/{{task}}/training_curve.png",
            caption="../report/training_curve.rst",
            category="5. Training",
            labels={"task": "{task}", "figure": "training curve"},
        ),
    params:
        skysift=SKYSIFT_CLI,
        code=lambda wildcards: code_version("skysift.cli.training:_train", f"skysift.{wildcards.task}.task"),
        command=train_launcher,
        outdir=lambda wildcards: f"{RESULTS}/models/{wildcards.task}",
        options=lambda wildcards: train_flags(wildcards.task),
        provenance=lambda wildcards: provenance_flags(f"train_{wildcards.task}", f"train.{wildcards.task}"),
    wildcard_constraints:
        task="|".join(MODEL_TASKS),
    log:
        f"{LOGS}/train/{{task}}.log",
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards: train_settings(wildcards.task)["mem_mb"],
        runtime=lambda wildcards: train_settings(wildcards.task)["runtime"],
        cpus_per_task=lambda wildcards: max(1, train_settings(wildcards.task)["threads"]),
        gpu=lambda wildcards: train_settings(wildcards.task)["gpus"],
        cpus_per_gpu=lambda wildcards: train_settings(wildcards.task)["cpus_per_gpu"]
        if train_settings(wildcards.task)["gpus"]
        else 0,
        tasks=lambda wildcards: max(1, train_settings(wildcards.task)["gpus"]),
    shell:
        "{params.skysift} {params.command} --task {wildcards.task} --product {input.product} "
        "--outdir {params.outdir} {params.options} {params.provenance} > {log} 2>&1"


rule score_test:
    input:
        product=f"{RESULTS}/{{task}}/training_set.h5",
        model=f"{RESULTS}/models/{{task}}/model.pt",
        card=f"{RESULTS}/models/{{task}}/model_card.json",
    output:
        scores=f"{RESULTS}/{{task}}/scores_test.h5",
        catalogue=f"{RESULTS}/{{task}}/candidates_test.ecsv",
    params:
        skysift=SKYSIFT_CLI,
        code=lambda wildcards: code_version("skysift.cli.training:_score", f"skysift.{wildcards.task}.task"),
        model_dir=lambda wildcards: f"{RESULTS}/models/{wildcards.task}",
        provenance=lambda wildcards: provenance_flags(f"score_{wildcards.task}", f"train.{wildcards.task}"),
    wildcard_constraints:
        task="|".join(MODEL_TASKS),
    log:
        f"{LOGS}/score/{{task}}.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "{params.skysift} score --model {params.model_dir} --product {input.product} --split test "
        "--out {output.scores} --catalogue {output.catalogue} {params.provenance} > {log} 2>&1"


rule evaluate:
    input:
        scores=f"{RESULTS}/{{task}}/scores_test.h5",
        product=f"{RESULTS}/{{task}}/training_set.h5",
    output:
        metrics=f"{RESULTS}/{{task}}/evaluation/metrics.json",
        roc=report(
            f"{RESULTS}/{{task}}/evaluation/roc.png",
            caption="../report/roc.rst",
            category="6. Evaluation",
            labels={"task": "{task}", "figure": "ROC curve"},
        ),
        gallery=report(
            f"{RESULTS}/{{task}}/evaluation/gallery.png",
            caption="../report/gallery.rst",
            category="6. Evaluation",
            labels={"task": "{task}", "figure": "gallery"},
        ),
    params:
        skysift=SKYSIFT_CLI,
        code=lambda wildcards: code_version("skysift.cli.training:_evaluate", f"skysift.{wildcards.task}.task"),
        outdir=lambda wildcards: f"{RESULTS}/{wildcards.task}/evaluation",
    wildcard_constraints:
        task="|".join(MODEL_TASKS),
    log:
        f"{LOGS}/evaluate/{{task}}.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} evaluate --task {wildcards.task} --scores {input.scores} "
        "--product {input.product} --outdir {params.outdir} > {log} 2>&1"


rule metrics_table:
    input:
        expand(f"{RESULTS}/{{task}}/evaluation/metrics.json", task=enabled_tasks()),
    output:
        report(
            f"{RESULTS}/evaluation/metrics.html",
            caption="../report/metrics_table.rst",
            category="6. Evaluation",
            labels={"table": "held-out metrics per model"},
        ),
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.training:_metrics_table"),
    log:
        f"{LOGS}/metrics_table.log",
    conda:
        "../../envs/provenance.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "{params.skysift} metrics-table {input} --out {output} > {log} 2>&1"
