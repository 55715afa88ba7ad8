"""File formats at the edge of the library: reading sample arrays and writing CF forecasts.

Modules:
    arrays: ``read_samples`` — ``(N, T, H, W[, C])`` arrays from ``.npy``, NetCDF or Zarr, with
        errors that name the problem and the fix.
    forecast: ``forecast_dataset`` / ``write_forecast`` — forecasts (and ensembles) as
        CF-1.8 NetCDF with lead times, units and provenance.
"""
