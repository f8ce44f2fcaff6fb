"""The authors' released CLIP-SR generator (`generator`) and the safe import of their checkpoint
(`importer`); `clipsr.factory.create_model` recognises that checkpoint and builds the model from both."""
