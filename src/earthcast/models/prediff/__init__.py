"""PreDiff (NeurIPS 2023): latent diffusion nowcasting with ensembles and knowledge control."""
