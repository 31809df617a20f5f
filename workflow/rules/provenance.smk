# Stage: provenance of the run, summarised for the report.


rule provenance_summary:
    input:
        all_products(),
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
        "{params.skysift} provenance summary {input} --outdir {params.outdir} "
        "--run-name {params.run_name} > {log} 2>&1"


rule provenance_export:
    input:
        products=all_products(),
        summary=f"{RESULTS}/provenance/summary.json",
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
        "{params.skysift} provenance export {input.products} --outdir {params.outdir} "
        "--schema {params.schema} --config-json {params.config_json} --run-name {params.run_name} > {log} 2>&1"
