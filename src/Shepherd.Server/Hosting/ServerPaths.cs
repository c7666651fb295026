using Shepherd.Engine;

namespace Shepherd.Server.Hosting;

/// <summary>
/// Where the server keeps temporary files: request bodies being read and result files being
/// written, next to an embedded store so they share its disk, or in the temporary folder under
/// the node's name for a shared one. Left-overs of a crash are removed on start.
/// </summary>
internal sealed class ServerPaths
{
    public ServerPaths(ShepherdEngineOptions engine)
    {
        SpoolFolder = engine.SharedStore is { } shared
            ? Path.Combine(Path.GetTempPath(), "shepherd-" + string.Concat(shared.NodeName.Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_')) + ".spool")
            : Path.GetFullPath(engine.Store!.Path) + ".spool";
        if (Directory.Exists(SpoolFolder))
        {
            Directory.Delete(SpoolFolder, recursive: true);
        }

        Directory.CreateDirectory(SpoolFolder);
    }

    public string SpoolFolder { get; }

    public string SpoolFile(string name) => Path.Combine(SpoolFolder, name);
}
