# Stage: provenance of the run, summarised for the report.


rule product_list:
    # Every product of the run, one path per line, for the provenance commands: as arguments
    # they would pass the kernel's limit on one shell command (128 KiB, about 2,000 products).
    # Python in the Snakemake process (no conda env: it imports nothing beyond skysift.io).
    input:
        all_products(),
    output:
        listing=f"{RESULTS}/provenance/products.txt",
    log:
        f"{LOGS}/product_list.log",
    localrule: True
    run:
        from skysift.batch import expand_batch_records
        from skysift.io import write_path_list

        # a batch job's record stands for the products of its pairs
        write_path_list(expand_batch_records(input, f"{RESULTS}/batches"), output.listing)


rule provenance_summary:
    input:
        listing=rules.product_list.output.listing,
    output:
        json=f"{RESULTS}/provenance/summary.json",
        html=report(
            f"{RESULTS}/provenance/summary.html",
            caption="../report/provenance_summary.rst",
            category="9. Provenance",
            labels={"table": "products and their provenance"},
        ),
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.records:_provenance_summary"),
        outdir=lambda wildcards, output: Path(output.json).parent,
        run_name=config["run_name"],
    log:
        f"{LOGS}/provenance_summary.log",
    conda:
        "../../envs/provenance.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{params.skysift} provenance summary @{input.listing} --outdir {params.outdir} "
        "--run-name {params.run_name} > {log} 2>&1"


rule provenance_export:
    input:
        listing=rules.product_list.output.listing,
        summary=rules.provenance_summary.output.json,
    output:
        prov_json=f"{RESULTS}/provenance/prov.json",
        prov_n=f"{RESULTS}/provenance/prov.provn",
        ivoa=f"{RESULTS}/provenance/ivoa_provenance.json",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.records:_provenance_export"),
        outdir=lambda wildcards, output: Path(output.prov_json).parent,
        config_json=shlex.quote(json.dumps(config, sort_keys=True, default=str)),
        schema=SCHEMA_PATH,
        run_name=config["run_name"],
    log:
        f"{LOGS}/provenance_export.log",
    conda:
        "../../envs/provenance.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{params.skysift} provenance export @{input.listing} --outdir {params.outdir} "
        "--schema {params.schema} --config-json {params.config_json} --run-name {params.run_name} > {log} 2>&1"
