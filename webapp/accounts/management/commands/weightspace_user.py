"""Create (or reset) a local account and print its password and API token."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create a local account (or reset its password) and print the password and API token."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", help="Default: a new random password.")
        parser.add_argument(
            "--if-missing", action="store_true", help="Do nothing when the account exists."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username = options["username"]
        user = User.objects.filter(username=username).first()
        if user and options["if_missing"]:
            self.stdout.write(f"Account '{username}' exists (reset with `make user`).")
            return
        password = options["password"] or secrets.token_urlsafe(12)
        if user is None:
            user = User.objects.create_superuser(username=username, email="", password=password)
        else:
            user.set_password(password)
            user.save()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Log in at http://127.0.0.1:8000/ as  {username} / {password}\n"
                f"  API token: {token.key}\n"
            )
        )
