"""A learned world model as the environment (issue 21; EVAC in seed 004), one module per concept:

* config.py: WorldModelConfig, the sizes (saved as config.json);
* autoencoder.py: FrameAutoencoder, frames <-> latent grids;
* generator.py: LatentFlowGenerator, the next `chunk` latents from memory latents, actions and poses (flow matching);
* pose.py: ActionToPose, relative actions -> absolute end-effector poses;
* reward.py: SuccessClassifier, frame -> success probability;
* model.py: WorldModel, the four together, save_pretrained / from_pretrained of a local directory;
* trajectories.py: trajectory data sets (envs/demos.py's layout) -> episodes, training windows, start states;
* metrics.py: PSNR and SSIM;
* train.py: training and held-out evaluation of each part (``python -m envs.world_model.train``);
* vector.py: WorldModelVectorEnv, ``WorldModel-v0`` behind the vector-env contract.

Nothing is imported here (torch and the models load when an env is made): envs/__init__.py routes ``ENV_ID``
to vector.py.
"""
ENV_ID = "WorldModel-v0"
