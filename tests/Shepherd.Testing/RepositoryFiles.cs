namespace Shepherd.Testing;

/// <summary>
/// The repository the tests were built from: its docs and project files are part of what the
/// tests check (documented examples, metric tables, the projects' boundaries).
/// </summary>
public static class RepositoryFiles
{
    /// <summary>The folder that holds <c>Shepherd.slnx</c>, found above the test's own binaries.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>A path below <see cref="Root"/>.</summary>
    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    /// <summary>The text of a file below <see cref="Root"/>.</summary>
    public static string Read(params string[] parts) => File.ReadAllText(Path(parts));

    private static string FindRoot()
    {
        var folder = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(System.IO.Path.Combine(folder.FullName, "Shepherd.slnx")))
        {
            folder = folder.Parent ?? throw new InvalidOperationException("The repository root (Shepherd.slnx) is not above the test.");
        }

        return folder.FullName;
    }
}
