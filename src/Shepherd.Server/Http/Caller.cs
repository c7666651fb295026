using Microsoft.AspNetCore.Http;

namespace Shepherd.Server.Http;

/// <summary>
/// Who made a call: the owner of the files and batches it creates (null when the server has no
/// keys), what its key may do, and its tenant's limits.
/// </summary>
internal sealed record Caller(string? Owner, KeyScopes Scopes = KeyScopes.Read | KeyScopes.Submit, TenantLimits? Limits = null)
{
    /// <summary>True for an admin key: it sees every tenant's objects.</summary>
    public bool IsAdmin => Scopes.HasFlag(KeyScopes.Admin);

    /// <summary>Whose objects the caller's listings hold: its own, or everyone's for an admin.</summary>
    public Engine.Model.OwnerScope Listing => new(Owner, IsAdmin);

    /// <summary>True when the caller may see an object of <paramref name="owner"/>.</summary>
    public bool Sees(string? owner) => IsAdmin || owner == Owner;

    public static Caller Of(HttpContext context) =>
        context.Features.Get<Caller>() ?? throw new InvalidOperationException("The call was not authenticated.");

    /// <summary>Gives a handler that takes a <see cref="Caller"/> the one the middleware let in.</summary>
    public static ValueTask<Caller?> BindAsync(HttpContext context) => ValueTask.FromResult<Caller?>(Of(context));
}
