from django.contrib.auth import views as auth_views
from django.urls import path

from workspace.views import WorkspaceView

app_name = "workspace"
urlpatterns = [
    path("", WorkspaceView.as_view(), name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    # Django's LogoutView accepts POST only: the page's "Sign out" is a form.
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
