using Microsoft.AspNetCore.Http;
using Shepherd.Engine.Formats;
using Shepherd.Server.Batches;
using Shepherd.Server.Hosting;
using Shepherd.Server.OpenAI;

namespace Shepherd.Server.Http;

/// <summary>
/// The bodies of the calls that carry requests (an inline create, an Anthropic create, an
/// estimate): read into the spool folder within the server's limits, and, for inline requests,
/// turned into the lines the importer and the estimator read. Every door reads them alike.
/// </summary>
internal sealed class CreateBodies(ServerPaths paths, ServerOptions options, Importers importers)
{
    /// <summary>The most requests one body may hold.</summary>
    public long MaxRequests => options.MaxCreateRequests;

    /// <summary>The largest single request.</summary>
    public int MaxLineBytes => importers.MaxLineBytes;

    /// <summary>Reads the call's body to the spool folder; the body's file is removed when it is disposed.</summary>
    public Task<CreateBody> ReadAsync(HttpRequest request, CancellationToken cancellationToken) =>
        CreateBody.ReadAsync(request.Body, paths.SpoolFolder, options.MaxCreateRequests, importers.MaxLineBytes, cancellationToken);

    /// <summary>
    /// The inline requests of <paramref name="body"/> as lines of <paramref name="endpoint"/>,
    /// with <paramref name="model"/> for those that name none, and the requests that could not
    /// be turned into lines (refused with <paramref name="refusal"/>). The lines' file is named
    /// after <paramref name="use"/> and removed when they are disposed.
    /// </summary>
    public async Task<InlineLines> ConvertAsync(CreateBody body, string use, string endpoint, string? model, string refusal, CancellationToken cancellationToken)
    {
        var path = paths.SpoolFile(use + "-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            return new InlineLines(path, await InlineRequests.ConvertAsync(body.SpoolPath, path, endpoint, model, importers.MaxLineBytes, refusal, cancellationToken));
        }
        catch
        {
            File.Delete(path);
            throw;
        }
    }
}

/// <summary>Inline requests written as lines to <paramref name="Path"/>, which is removed on dispose.</summary>
/// <param name="Path">The lines' file in the spool folder.</param>
/// <param name="Refused">The requests that could not be made lines, by request.</param>
internal sealed record InlineLines(string Path, IReadOnlyList<InputError> Refused) : IDisposable
{
    public void Dispose() => File.Delete(Path);
}
