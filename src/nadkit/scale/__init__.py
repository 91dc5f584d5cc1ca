"""Scale-out through existing engines: :mod:`nadkit.scale.spark` scores large Parquet datasets on
Apache Spark, :mod:`nadkit.scale.distributed` trains on several processes or machines with
torch.distributed. Neither engine is imported until it is used."""
