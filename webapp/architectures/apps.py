from django.apps import AppConfig


class ArchitecturesConfig(AppConfig):
    name = "webapp.architectures"
    label = "architectures"
